"""Evaluation protocols: `dift` equals a dense reference written from DIFT's definition, and
every correspondence score says which protocol produced it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from autosel.config import FeatureConfig
from autosel.data.records import CorrespondenceData, KeypointPair
from autosel.errors import InvalidInputError
from autosel.extract import combine_features
from autosel.protocols import PROTOCOLS, get_protocol
from autosel.tasks.correspondence import CorrespondenceTask


def dift_reference(source: torch.Tensor, target: torch.Tensor, points: np.ndarray, source_size, target_size, working):
    """DIFT's matching, written out densely: upsample the raw maps (nn.Upsample, bilinear), take
    the source vector at the keypoint's (rounded) cell, cosine-compare it with every target cell,
    and map the best cell back to target pixels. Returns the predictions and the K×H×W similarities."""
    up_source = F.interpolate(source[None], size=working, mode="bilinear", align_corners=False)[0]
    up_target = F.interpolate(target[None], size=working, mode="bilinear", align_corners=False)[0]
    up_target = F.normalize(up_target, dim=0)
    predicted, similarities = [], []
    for x, y in points:
        cell_x = min(max(round((x + 0.5) * working[1] / source_size[1] - 0.5), 0), working[1] - 1)
        cell_y = min(max(round((y + 0.5) * working[0] / source_size[0] - 0.5), 0), working[0] - 1)
        query = F.normalize(up_source[:, cell_y, cell_x], dim=0)
        similarity = torch.einsum("c,chw->hw", query, up_target)
        row, col = divmod(int(similarity.argmax()), working[1])
        predicted.append([(col + 0.5) * target_size[1] / working[1] - 0.5, (row + 0.5) * target_size[0] / working[0] - 0.5])
        similarities.append(similarity)
    return np.array(predicted, dtype=np.float32), torch.stack(similarities)


def assert_same_matches_up_to_ties(predicted, expected, similarities, target_size, working, tolerance=1e-4):
    """``predicted`` equals ``expected`` point by point, except where the two cells are tied:
    within ``tolerance`` of each other in the reference's similarities (two implementations
    round differently, so either may win a near-tie)."""
    differ = np.abs(predicted - expected).max(1) > 1e-4
    for index in np.flatnonzero(differ):
        col = round((predicted[index, 0] + 0.5) * working[1] / target_size[1] - 0.5)
        row = round((predicted[index, 1] + 0.5) * working[0] / target_size[0] - 0.5)
        best = float(similarities[index].max())
        assert best - float(similarities[index, row, col]) <= tolerance, f"point {index}: not a tie"


def test_the_dift_protocol_matches_the_dense_dift_reference():
    generator = torch.Generator().manual_seed(0)
    wide = {"a": torch.randn(2, 48, 12, 12, generator=generator), "b": torch.randn(2, 8, 12, 12, generator=generator) * 30}
    config = FeatureConfig.from_dict({"model": {"name": "tiny"},
                                      "activations": [{"id": "a", "timestep": 50}, {"id": "b", "timestep": 50}]})
    dift = get_protocol("dift")
    combined = combine_features(dift.apply(config), wide)  # raw concatenation: no per-activation normalisation
    assert torch.allclose(combined, torch.cat([wide["a"], wide["b"]], dim=1))
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 47, size=(30, 2)).astype(np.float32)
    pair = KeypointPair(source=0, target=1, category="x", source_points=points, target_points=points,
                        visible=np.ones(30, bool), source_size=(48, 48), target_size=(40, 56), target_bbox=(0, 0, 56, 40))
    task = CorrespondenceTask(CorrespondenceData("synthetic", [None, None], [pair]), working_size=(36, 36), query="nearest")
    predicted = task.predict([pair], {0: combined[0], 1: combined[1]})[0].numpy()
    expected, similarities = dift_reference(combined[0], combined[1], points, (48, 48), (40, 56), (36, 36))
    assert_same_matches_up_to_ties(predicted, expected, similarities, (40, 56), (36, 36))


def test_a_comparison_with_the_reference_accepts_a_near_tie_but_not_a_worse_cell():
    similarities = torch.zeros(1, 2, 2)
    similarities[0, 0, 0], similarities[0, 1, 1] = 0.9, 0.9 - 1e-6  # a near-tie between cells (0, 0) and (1, 1)
    first, last = np.array([[0.0, 0.0]], np.float32), np.array([[1.0, 1.0]], np.float32)
    assert_same_matches_up_to_ties(last, first, similarities, (2, 2), (2, 2))
    similarities[0, 1, 1] = 0.5
    with pytest.raises(AssertionError, match="not a tie"):
        assert_same_matches_up_to_ties(last, first, similarities, (2, 2), (2, 2))


def test_the_default_protocol_differs_from_dift_on_unbalanced_activations():
    generator = torch.Generator().manual_seed(1)
    wide = {"a": torch.randn(1, 48, 8, 8, generator=generator), "b": torch.randn(1, 8, 8, 8, generator=generator) * 30}
    config = FeatureConfig.from_dict({"model": {"name": "tiny"},
                                      "activations": [{"id": "a", "timestep": 50}, {"id": "b", "timestep": 50}]})
    default = combine_features(get_protocol("autosel").apply(config), wide)
    raw = combine_features(get_protocol("dift").apply(config), wide)
    assert torch.allclose(default[:, :48].norm(dim=1), torch.ones(1, 8, 8), atol=1e-5)  # each activation at unit norm
    assert not torch.allclose(default, raw)


def test_an_unknown_protocol_names_the_choices():
    with pytest.raises(InvalidInputError, match="unknown protocol 'dfit': Did you mean 'dift'"):
        get_protocol("dfit")
    assert set(PROTOCOLS) == {"autosel", "dift"}


def test_evaluate_labels_its_score_with_the_protocol(run_cli, tmp_path):
    import json

    config = tmp_path / "tiny.yaml"
    config.write_text("model: {name: tiny}\nextraction: {image_size: 64}\nactivations: [{id: up-level1-repeat0-res-increment, timestep: 50}]\n")
    done = run_cli("evaluate", "--config", str(config), "--max-pairs", "10", "--protocol", "dift", "--format", "json", "--no-progress")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["protocol"] == "dift" and "rounded cell" in result["protocol_description"]


def test_the_dift_protocol_prompts_each_image_with_its_category_as_dift_does():
    config = FeatureConfig.from_dict({"model": {"name": "tiny"}, "activations": [{"id": "mid-vit-out", "timestep": 261}]})
    assert get_protocol("dift").apply(config).extraction.prompt == "a photo of a {category}"
    assert get_protocol("autosel").apply(config).extraction.prompt == ""
