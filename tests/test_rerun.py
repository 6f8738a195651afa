"""A finished search reruns for free; more trials run only the new ones; the plan counts what runs."""

from __future__ import annotations

import logging

import pytest
import yaml
from fixture_data import small_search_space

import autosel
from autosel.cache.fill import search_cache_keys
from autosel.denoiser import Denoiser
from autosel.pipeline import Search
from autosel.space import SearchSpace
from autosel.tasks import make_task


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


def test_each_stage_runs_the_forwards_its_plan_counted_and_never_more_than_a_bound(first):
    _, plan, outcome = first
    assert set(outcome.forwards) == set(plan.forwards) and plan.upper_bounds == ["confirm"]
    for stage, planned in plan.forwards.items():
        if stage in plan.upper_bounds:
            assert outcome.forwards[stage] <= planned, (stage, outcome.forwards, plan.forwards)
        else:
            assert outcome.forwards[stage] == planned, (stage, outcome.forwards, plan.forwards)


def test_the_cache_stage_takes_the_screens_own_captures_and_runs_no_forward(first):
    _, plan, outcome = first
    assert plan.forwards["cache"] == outcome.forwards["cache"] == 0 and outcome.forwards["screen"] > 0


def screen_and_cache(folder, cache_memory: str):
    """The plan, then the screen and cache stages of the small search in ``folder``; the search
    and the cache's arrays by (id, t)."""
    import numpy as np

    from autosel.cache import ActivationCache

    search = tiny_search(folder, trials=6)
    search.run_config = search.run_config.model_copy(update={"cache_memory": cache_memory})
    search.plan()
    with search:
        search.check()
        cached = search.cache(search.candidates(search.screen()))
    task = make_task(search.space.task, search.space.dataset, "search", **search.space.task_options())
    keys = search_cache_keys(search.space, task, search.plan().image_size, cached)
    arrays = {pair: np.asarray(ActivationCache(search.cache_dir).get(key)) for pair, key in keys.items()}
    return search, arrays


def test_the_captures_a_screen_keeps_are_bitwise_the_entries_a_fill_computes(tmp_path):
    kept, from_screen = screen_and_cache(tmp_path / "kept", "4GB")
    filled, from_fill = screen_and_cache(tmp_path / "filled", "1KB")  # too small to keep the screen's captures
    assert kept.forwards["cache"] == 0 and filled.forwards["cache"] > 0
    assert kept.plan().forwards["cache"] == 0 and "cache" not in kept.plan().upper_bounds
    assert filled.plan().forwards["cache"] >= filled.forwards["cache"] and "cache" in filled.plan().upper_bounds
    assert any("exceed --cache-memory" in note for note in filled.plan().notes)
    assert from_screen.keys() == from_fill.keys()
    for pair, array in from_screen.items():
        assert array.tobytes() == from_fill[pair].tobytes(), pair


def test_the_plan_of_a_finished_search_counts_no_forward_and_loads_no_model(first, monkeypatch):
    folder, _, _ = first
    refuse_loading(monkeypatch)
    plan = tiny_search(folder, trials=6).plan(measure=True)
    assert plan.forwards == {"screen": 0, "cache": 0, "confirm": 0} and plan.upper_bounds == []
    assert any("no forward to run" in note for note in plan.notes)


def test_after_the_screen_the_plan_counts_the_cache_exactly(tmp_path):
    search = tiny_search(tmp_path, trials=6)
    with search:
        search.check()
        sweep = search.screen()
    again = tiny_search(tmp_path, trials=6)
    plan = again.plan()
    assert plan.forwards["screen"] == 0 and "cache" not in plan.upper_bounds
    with again:
        again.cache(again.candidates(sweep))
    assert again.forwards["cache"] == plan.forwards["cache"] > 0
    assert tiny_search(tmp_path, trials=6).plan().forwards["cache"] == 0  # now it is all cached


def test_a_search_plan_reads_a_server_store_without_creating_a_table(tmp_path, postgres_url):
    import sqlalchemy as sa

    space = SearchSpace.from_dict(small_search_space(trials=6))
    search = Search(space, autosel.RunConfig(out=tmp_path, storage=postgres_url, cache_dir=tmp_path / "cache", progress=False),
                    autosel.Resources(workers=0, batch_size=16))
    plan = search.plan()
    assert plan.forwards["screen"] > 0 and plan.upper_bounds == ["confirm"]
    engine = sa.create_engine(postgres_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_the_plans_cache_keys_are_the_ones_the_workers_fill(tmp_path):
    from autosel.cache.fill import cache_keys, search_cache_keys
    from autosel.encoding import model_run
    from autosel.tasks import make_task

    space = tiny_search(tmp_path, trials=6).space
    run = model_run(space, device="cpu", batch_size=4)
    task = make_task(space.task, space.dataset, "search", **space.task_options())
    entries = [("mid-vit-out", 50), ("up-level1-repeat0-res-out", 150)]
    search = space.search
    assert search_cache_keys(space, task, tuple(run.image_size), entries) == cache_keys(
        run, task, space.dataset, "search", entries, search.cache_resolution, search.cache_dim, space.seed)


def test_every_stage_event_carries_its_forwards_as_the_plan_refined_for_it_counted_them(first, events):
    _, _, outcome = first
    by_stage = {f["event"]: f for f in events.fields if f.get("event") in ("screen", "cache", "search", "confirm") and "forwards" in f}
    assert set(by_stage) == {"screen", "cache", "search", "confirm"}
    assert {stage: by_stage[stage]["forwards"] for stage in outcome.forwards} == outcome.forwards
    assert by_stage["cache"]["planned"] == by_stage["cache"]["forwards"] == 0  # the screen kept its captures
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
