"""Several configs scored together share their denoiser forwards and score as if scored alone."""

from __future__ import annotations

import pytest

from autosel.config import FeatureConfig
from autosel.denoiser import Denoiser
from autosel.evaluation import evaluate_config, evaluate_configs
from autosel.extract import FeatureExtractor
from autosel.tasks import CorrespondenceTask, SegmentationTask


def tiny_config(activations: list[dict], **aggregation: object) -> FeatureConfig:
    return FeatureConfig.from_dict({"model": {"name": "tiny"}, "extraction": {"image_size": 64},
                                    "activations": activations, "aggregation": aggregation})


CONFIGS = [
    tiny_config([{"id": "up-level1-repeat0-res-increment", "timestep": 50}]),
    tiny_config([{"id": "up-level0-upsampler-out", "timestep": 10, "weight": 2.0},
                 {"id": "up-level1-repeat0-res-increment", "timestep": 50, "post": "drop-massive"}]),
    tiny_config([{"id": "down-level2-repeat0-res-increment", "timestep": 150},
                 {"id": "up-level0-upsampler-out", "timestep": 10, "post": "none"}], pca_dim=8),
]


@pytest.fixture(scope="module")
def denoiser() -> Denoiser:
    return Denoiser.load("tiny", device="cpu")


def alone(denoiser: Denoiser, task, batch_size: int) -> list[dict]:
    return [evaluate_config(FeatureExtractor(c, denoiser=denoiser, batch_size=batch_size), task, progress=False).to_dict()
            for c in CONFIGS]


def test_configs_scored_together_equal_each_scored_alone_bitwise(denoiser):
    task = CorrespondenceTask.from_spec("shapes", role="heldout", pairs=5)
    together = [r.to_dict() for r in evaluate_configs(denoiser, CONFIGS, task, batch_size=5, progress=False)]
    assert together == alone(denoiser, task, batch_size=5)


def test_configs_scored_together_take_one_forward_per_batch_and_distinct_timestep(denoiser):
    task = CorrespondenceTask.from_spec("shapes", role="heldout", pairs=5)
    batches = -(-len(task.image_order()) // 8)
    before = denoiser.forward_count
    evaluate_configs(denoiser, CONFIGS, task, batch_size=8, progress=False)
    assert denoiser.forward_count - before == batches * len({10, 50, 150})


@pytest.mark.slow
def test_a_task_that_trains_first_scores_together_as_alone(denoiser):
    task = SegmentationTask.from_spec("shapes", role="heldout", train_images=2, test_images=2)
    together = [r.to_dict() for r in evaluate_configs(denoiser, CONFIGS[:2], task, batch_size=4, progress=False)]
    assert together == alone(denoiser, task, batch_size=4)[:2]


def test_cli_scores_several_configs_as_each_alone(run_cli, tmp_path):
    import json

    paths = []
    for number, config in enumerate(CONFIGS[:2]):
        paths.append(tmp_path / f"config{number}.yaml")
        config.to_yaml(paths[-1])
    common = ("--max-pairs", "4", "--format", "json", "--no-progress")
    both = run_cli("evaluate", "--config", paths[0], "--config", paths[1], *common)
    assert both.returncode == 0, both.stderr
    alone = [json.loads(run_cli("evaluate", "--config", path, *common).stdout) for path in paths]
    assert [d["metrics"] for d in json.loads(both.stdout)] == [d["metrics"] for d in alone]
