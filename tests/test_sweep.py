"""The screening sweep: one forward per image batch and timestep, scores equal to separate runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from autosel.errors import UnknownActivationError
from autosel.evaluation import evaluate_config
from autosel.extract import FeatureExtractor
from autosel.models import load_pipeline
from autosel.schema import ConfigError
from autosel.screen import run_sweep
from autosel.screen.sweep import base_config
from autosel.space import SearchSpace
from autosel.store import SweepStore
from autosel.tasks import make_task

BATCH = 8


@pytest.fixture(scope="module")
def tiny_pipeline():
    return load_pipeline("tiny")


def small_space(**changes) -> SearchSpace:
    space = SearchSpace(
        model="tiny", image_size=64, timesteps=[50, 300],
        candidates={"include": ["up-level1-repeat0-*", "mid-vit-out"], "exclude": ["*-map"]},
        proxy={"pairs": 12},
    )
    return space.replace(**changes)


def test_sweep_scores_equal_extracting_each_candidate_separately(tiny_pipeline, tmp_path):
    space = small_space()
    result = run_sweep(space, out=tmp_path, pipeline=tiny_pipeline, batch_size=BATCH, progress=False, write_files=False)
    task = make_task("correspondence", "shapes", "search", **space.task_options())
    for name, timestep in [("up-level1-repeat0-res-increment", 50), ("mid-vit-out", 300), ("up-level1-repeat0-vit-block0-cross-q", 50)]:
        extractor = FeatureExtractor(base_config(space, name, timestep), pipeline=tiny_pipeline, batch_size=BATCH)
        separate = evaluate_config(extractor, task, progress=False)
        rows = result.rows[(result.rows["id"] == name) & (result.rows["timestep"] == timestep)]
        assert dict(zip(rows["metric"], rows["value"])) == separate.metrics


def test_segmentation_sweep_scores_equal_a_separate_run(tiny_pipeline, tmp_path):
    space = small_space(task="segmentation", timesteps=[150], candidates={"include": ["mid-vit-out"], "exclude": []},
                        proxy={"train_images": 4, "test_images": 4})
    result = run_sweep(space, out=tmp_path, pipeline=tiny_pipeline, batch_size=BATCH, progress=False, write_files=False)
    task = make_task("segmentation", "shapes", "search", **space.task_options())
    extractor = FeatureExtractor(base_config(space, "mid-vit-out", 150), pipeline=tiny_pipeline, batch_size=BATCH)
    separate = evaluate_config(extractor, task, progress=False)
    assert dict(zip(result.rows["metric"], result.rows["value"])) == separate.metrics


def test_forwards_are_image_batches_times_timesteps_whatever_the_candidates(tiny_pipeline, tmp_path):
    space = small_space()
    result = run_sweep(space, out=tmp_path, pipeline=tiny_pipeline, batch_size=BATCH, progress=False, write_files=False)
    images = len(make_task("correspondence", "shapes", "search", **space.task_options()).images)
    candidates = result.rows["id"].nunique()
    assert candidates > 5
    assert result.forwards == math.ceil(images / BATCH) * len(space.timesteps)
    assert result.computed == candidates * len(space.timesteps)


def test_a_rerun_reuses_stored_scores_and_computes_only_new_timesteps(tiny_pipeline, tmp_path):
    space = small_space()
    first = run_sweep(space, out=tmp_path, pipeline=tiny_pipeline, batch_size=BATCH, progress=False, write_files=False)
    again = run_sweep(space, out=tmp_path, pipeline=tiny_pipeline, batch_size=BATCH, progress=False, write_files=False)
    assert (again.forwards, again.computed, again.reused) == (0, 0, first.computed)
    assert again.rows.equals(first.rows)
    wider = run_sweep(space.replace(timesteps=[50, 300, 500]), out=tmp_path, pipeline=tiny_pipeline, batch_size=BATCH, progress=False, write_files=False)
    assert wider.reused == first.computed and wider.computed == first.computed // 2


def test_results_go_to_csv_and_a_real_heatmap(tiny_pipeline, tmp_path):
    result = run_sweep(small_space(), out=tmp_path, pipeline=tiny_pipeline, batch_size=BATCH, progress=False)
    assert result.csv.parent == tmp_path / "tiny" / "correspondence" and result.csv.name.startswith("sweep-")
    header = result.csv.read_text().splitlines()[0].split(",")
    for column in ("model", "revision", "id", "kind", "stage", "level", "channels", "timestep", "metric", "value", "n_items", "seconds"):
        assert column in header
    pixels = np.asarray(Image.open(result.heatmap).convert("L"), dtype=float)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 400 and pixels.std() > 20
    top = result.top(3)
    assert list(top["value"]) == sorted(top["value"], reverse=True)


def test_sweep_rows_land_in_postgresql(tiny_pipeline, tmp_path, postgres_url):
    space = small_space(timesteps=[50], candidates={"include": ["mid-vit-out"], "exclude": []})
    run_sweep(space, out=tmp_path, storage=postgres_url, pipeline=tiny_pipeline, batch_size=BATCH, progress=False, write_files=False)
    stored = SweepStore(postgres_url).rows()
    assert set(stored["id"]) == {"mid-vit-out"} and len(stored) == 12  # 12 PCK variants
    again = run_sweep(space, out=tmp_path, storage=postgres_url, pipeline=tiny_pipeline, batch_size=BATCH, progress=False, write_files=False)
    assert again.forwards == 0


def test_a_glob_that_matches_nothing_lists_valid_ids(tiny_pipeline, tmp_path):
    space = small_space(candidates={"include": ["up-levle1-*"], "exclude": []})
    with pytest.raises(UnknownActivationError, match=r"include glob 'up-levle1-\*' matches no activation of tiny; valid ids are like up-level1"):
        run_sweep(space, out=tmp_path, pipeline=tiny_pipeline, progress=False)


def test_a_timestep_outside_the_schedule_names_the_range():
    with pytest.raises(ConfigError, match=r"timesteps: timestep 1000 is outside the scheduler's range 0…999"):
        small_space(timesteps=[10, 1000])


@pytest.mark.slow
def test_cli_sweep_prints_the_best_and_the_forward_count(run_cli, tmp_path):
    done = run_cli(
        "sweep", "--model", "tiny", "--out", str(tmp_path), "--timesteps", "50", "--include", "up-level1-repeat0-res-*",
        "--no-progress", "--top", "2",
    )
    assert done.returncode == 0, done.stderr
    assert "up-level1-repeat0-res-increment" in done.stdout and "2 (id, t) scored now with" in done.stdout
    assert (tmp_path / "autosel.db").is_file() and any((tmp_path / "tiny" / "correspondence").glob("sweep-*.png"))
