"""The Python API: autosel.search / sweep / evaluate over SearchSpace, RunConfig and Resources."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixture_data import small_search_space

import autosel
from autosel.errors import InvalidInputError

PRESET = Path(__file__).resolve().parents[1] / "results" / "presets" / "legacy-tiny.yaml"


def test_the_main_jobs_are_top_level_functions():
    assert {"search", "sweep", "evaluate", "Search", "SearchSpace", "RunConfig", "Resources"} <= set(autosel.__all__)
    assert all(callable(getattr(autosel, name)) for name in ("search", "sweep", "evaluate"))


def test_run_config_and_resources_refuse_unknown_knobs():
    with pytest.raises(ValueError, match="workrs"):
        autosel.Resources(workrs=2)
    with pytest.raises(ValueError, match="storge"):
        autosel.RunConfig(storge="sqlite:///x.db")


def test_evaluate_scores_a_config_file_on_a_proxy_task():
    result = autosel.evaluate(PRESET, dataset="shapes", role="heldout", pairs=6, progress=False)
    assert result.primary == "pck@0.1/bbox/point" and 0 <= result.value <= 1 and result.n_items > 0


def test_evaluate_refuses_a_correspondence_protocol_for_segmentation():
    with pytest.raises(InvalidInputError, match="'dift' is a correspondence protocol"):
        autosel.evaluate(PRESET, task="segmentation", protocol="dift", progress=False)


def test_sweep_screens_every_candidate_at_every_timestep(tmp_path):
    space = autosel.SearchSpace.from_dict({**small_search_space(), "candidates": {"include": ["up-level0-repeat0-res-*"]}})
    result = autosel.sweep(space, autosel.RunConfig(out=tmp_path, progress=False), write_files=False)
    assert set(result.primary["timestep"]) == {50, 300} and result.computed == len(result.primary) > 0
    assert result.csv is None and result.forwards > 0
