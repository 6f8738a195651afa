"""End to end: the trained tiny model's features scored by both proxy tasks, library and CLI."""

from __future__ import annotations

import json

import pytest
import torch

from autosel.config import FeatureConfig
from autosel.evaluation import evaluate_config, extract_combined
from autosel.extract import FeatureExtractor
from autosel.tasks import CorrespondenceTask, SegmentationTask

TINY_CONFIG = {
    "model": {"name": "tiny"},
    "extraction": {"image_size": 64},
    "activations": [{"id": "up-level1-repeat0-res-increment", "timestep": 150}],
}


@pytest.fixture(scope="module")
def tiny_extractor() -> FeatureExtractor:
    return FeatureExtractor(FeatureConfig.from_dict(TINY_CONFIG), device="cpu", batch_size=16)


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    FeatureConfig.from_dict(TINY_CONFIG).to_yaml(path)
    return path


def test_tiny_features_find_shapes_keypoints_far_above_constant_features(tiny_extractor):
    task = CorrespondenceTask.from_spec("shapes", role="heldout", pairs=60)
    learned = evaluate_config(tiny_extractor, task, progress=False)
    constant = task.evaluate([torch.ones(4, 16, 16)] * len(task.images))
    assert learned.value > 0.3 and learned.value > constant.value + 0.25
    assert set(learned.per_category) == {"house", "tree", "bottle", "car"}


@pytest.mark.slow
def test_tiny_features_segment_shapes_parts_above_constant_features(tiny_extractor):
    task = SegmentationTask.from_spec("shapes", role="heldout", train_images=8, test_images=16)
    learned = evaluate_config(tiny_extractor, task, progress=False)
    constant = task.evaluate([torch.ones(4, 16, 16)] * len(task.images))
    assert learned.value > constant.value + 0.1


def test_combined_maps_are_float16_at_the_largest_activation_grid(tiny_extractor):
    maps = extract_combined(tiny_extractor, CorrespondenceTask.from_spec("shapes", pairs=2).images, progress=False)
    assert all(m.dtype == torch.float16 and m.ndim == 3 for m in maps)


def test_cli_scores_a_config_on_spair_format_files(run_cli, config_file, spair_root):
    done = run_cli("evaluate", "--config", str(config_file), "--dataset", f"spair:{spair_root}:test", "--format", "json", "--no-progress")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["primary"] == "pck@0.1/bbox/point" and len(result["metrics"]) == 12
    assert set(result["per_category"]) == {"house", "tree", "car"} and result["n_items"] > 0


def test_cli_scores_segmentation_on_a_label_folder(run_cli, config_file, label_folder):
    done = run_cli(
        "evaluate", "--config", str(config_file), "--task", "segmentation", "--dataset", f"folder:{label_folder}",
        "--format", "json", "--no-progress",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["primary"] == "miou" and 0 < result["value"] <= 1 and "background" in result["per_category"]


def test_cli_bad_dataset_is_one_line_naming_the_file(run_cli, config_file, spair_root):
    path = sorted((spair_root / "PairAnnotation" / "test").glob("*.json"))[0]
    path.write_text("{not json")
    done = run_cli("evaluate", "--config", str(config_file), "--dataset", f"spair:{spair_root}", "--no-progress")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and path.name in done.stderr and "not a readable pair annotation" in done.stderr
