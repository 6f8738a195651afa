"""A finished search reruns for free; more trials run only the new ones; the plan counts what runs."""

from __future__ import annotations

import logging

import pytest
import yaml
from fixture_data import small_search_space

import autosel
from autosel.denoiser import Denoiser
from autosel.pipeline import Search
from autosel.space import SearchSpace


def tiny_search(folder, trials: int, batch_size: int | str = 16) -> Search:
    space = SearchSpace.from_dict(small_search_space(trials=trials))
    return Search(space, autosel.RunConfig(out=folder, cache_dir=folder / "cache", progress=False),
                  autosel.Resources(workers=0, batch_size=batch_size))


class Events(logging.Handler):
    """The stage events' JSON fields, as ``--log-json`` writes them."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.fields.append(getattr(record, "fields", {}))


@pytest.fixture(scope="module")
def events() -> Events:
    return Events()


@pytest.fixture(scope="module")
def first(tmp_path_factory, events):
    """A finished 6-trial search and its folder (its stage events in ``events``)."""
    folder = tmp_path_factory.mktemp("rerun")
    search = tiny_search(folder, trials=6)
    logger = logging.getLogger("autosel")
    level = logger.level
    logger.addHandler(events)
    logger.setLevel(logging.INFO)
    try:
        return folder, search.plan(), search.run()
    finally:
        logger.removeHandler(events)
        logger.setLevel(level)


def refuse_loading(monkeypatch):
    def refused(*args, **kwargs):
        raise AssertionError("a rerun of a finished search loaded the model")

    monkeypatch.setattr(Denoiser, "load", refused)


def test_a_finished_search_rerun_runs_no_forward_and_writes_the_same_best(first, monkeypatch):
    folder, _, outcome = first
    best = folder / "tiny" / "correspondence" / "best.yaml"
    before = yaml.safe_load(best.read_text())
    best.unlink()
    refuse_loading(monkeypatch)
    again = tiny_search(folder, trials=6).run()
    assert sum(again.forwards.values()) == 0 and again.stats.evaluated == 0
    after = yaml.safe_load(best.read_text())
    assert after["activations"] == before["activations"] and after["score"]["value"] == before["score"]["value"]
    assert [c.heldout for c in again.confirmed] == [c.heldout for c in outcome.confirmed]


def test_each_stage_runs_the_forwards_its_plan_counted(first):
    _, plan, outcome = first
    assert set(outcome.forwards) == set(plan.forwards)
    for stage, planned in plan.forwards.items():
        assert abs(outcome.forwards[stage] - planned) <= 0.1 * planned, (stage, outcome.forwards, plan.forwards)


def test_every_stage_event_carries_its_forwards_as_the_plan_refined_for_it_counted_them(first, events):
    _, _, outcome = first
    by_stage = {f["event"]: f for f in events.fields if f.get("event") in ("screen", "cache", "search", "confirm") and "forwards" in f}
    assert set(by_stage) == {"screen", "cache", "search", "confirm"}
    assert {stage: by_stage[stage]["forwards"] for stage in outcome.forwards} == outcome.forwards
    assert by_stage["cache"]["planned"] == by_stage["cache"]["forwards"] > 0
    assert by_stage["confirm"]["planned"] == by_stage["confirm"]["forwards"] > 0


@pytest.mark.slow
def test_more_trials_run_only_the_new_ones_and_confirm_only_what_moved(first, tmp_path):
    import math
    import shutil

    folder, plan, outcome = first
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    search = tiny_search(copy, trials=9)
    more = search.run()
    assert more.forwards["screen"] == 0 and more.forwards["cache"] == 0
    assert more.stats.evaluated + more.stats.duplicates == 3
    before = {search.confirm_key(c.config) for c in outcome.confirmed}
    moved = [c for c in more.confirmed if search.confirm_key(c.config) not in before]
    timesteps = {a.timestep for c in moved for a in c.config.activations}
    assert more.forwards["confirm"] == math.ceil(plan.heldout_images / 16) * len(timesteps)
