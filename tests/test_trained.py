"""`correspondence-trained`: gdf's trained-head protocol on another split's pairs, seeded."""

from __future__ import annotations

import json

import pytest

from autosel.config import FeatureConfig
from autosel.evaluation import extract_combined
from autosel.extract import FeatureExtractor
from autosel.models import load_pipeline
from autosel.tasks import TrainedCorrespondenceTask, make_task


@pytest.fixture(scope="module")
def tiny_maps():
    """Combined maps of the tiny model's best single activation for a small trained task."""
    config = FeatureConfig.from_dict({"model": {"name": "tiny"}, "extraction": {"image_size": 64},
                                      "activations": [{"id": "up-level1-repeat0-res-increment", "timestep": 50}]})
    extractor = FeatureExtractor(config, pipeline=load_pipeline("tiny"), batch_size=32)
    task = make_task("correspondence-trained", "shapes", "heldout", pairs=12, train_pairs=40)
    return extract_combined(extractor, task.images, progress=False)


def small_task(**options) -> TrainedCorrespondenceTask:
    return make_task("correspondence-trained", "shapes", "heldout", pairs=12, train_pairs=40, **options)


def test_training_pairs_come_from_a_split_neither_role_scores():
    task = small_task()
    assert all(pair.name.startswith("shapes-train-") for pair in task.train.pairs)
    assert all(pair.name.startswith("shapes-heldout-") for pair in task.data.pairs)
    assert len(task.images) == len(task.train.images) + len(task.data.images)


@pytest.mark.slow
def test_the_head_s_loss_falls_over_training(tiny_maps):
    task = small_task()
    task.evaluate(tiny_maps)
    first, last = sum(task.losses[:10]) / 10, sum(task.losses[-10:]) / 10
    assert len(task.losses) == 80 and last < first - 0.2  # 2 epochs × 40 pairs


@pytest.mark.slow
def test_the_same_seed_gives_the_same_scores(tiny_maps):
    assert small_task().evaluate(tiny_maps).metrics == small_task().evaluate(tiny_maps).metrics
    task = small_task()
    other_seed = TrainedCorrespondenceTask(task.data, task.train, seed=1)  # same pairs, another initialisation and order
    assert other_seed.evaluate(tiny_maps).metrics != task.evaluate(tiny_maps).metrics


def test_evaluate_runs_the_trained_protocol_from_the_cli(run_cli, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text("model: {name: tiny}\nextraction: {image_size: 64}\nactivations: [{id: up-level1-repeat0-res-increment, timestep: 50}]\n")
    done = run_cli("evaluate", "--config", str(config), "--task", "correspondence-trained", "--max-pairs", "6",
                   "--train-pairs", "10", "--format", "json", "--no-progress")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["task"] == "correspondence-trained" and result["unit"] == "keypoints" and 0 <= result["value"] <= 1


@pytest.mark.slow
def test_a_search_can_confirm_with_the_trained_head(tmp_path):
    from fixture_data import small_search_space

    import autosel
    from autosel.space import SearchSpace

    space = small_search_space(trials=2)
    space = SearchSpace.from_dict({**space, "proxy": {"pairs": 8, "train_pairs": 12},
                                   "search": {**space["search"], "confirm_top": 1, "confirm_task": "correspondence-trained"}})
    outcome = autosel.search(space, autosel.RunConfig(out=tmp_path / "out", cache_dir=tmp_path / "cache", progress=False),
                             autosel.Resources(workers=0))
    best = FeatureConfig.from_yaml(outcome.folder / "best.yaml")
    assert best.score.task == "correspondence-trained" and best.score.protocol == "autosel"
    assert all(0 <= c.heldout <= 1 for c in outcome.confirmed)


def test_a_confirm_task_of_another_kind_is_refused(tmp_path):
    from fixture_data import small_search_space

    import autosel
    from autosel.errors import InvalidInputError
    from autosel.space import SearchSpace

    space = small_search_space()
    space = SearchSpace.from_dict({**space, "search": {**space["search"], "confirm_task": "segmentation"}})
    with pytest.raises(InvalidInputError, match="cannot confirm a correspondence search"):
        autosel.search(space, autosel.RunConfig(out=tmp_path), autosel.Resources(workers=0))
