"""Massive activations: the rule, `autosel inspect`, `post: drop-massive`, and the search's variants."""

from __future__ import annotations

import json

import pytest
import torch

from autosel.config import FeatureConfig
from autosel.denoiser import Denoiser
from autosel.extract import FeatureExtractor
from autosel.inspection import inspect_model
from autosel.massive import drop_massive, inspect_channels, massive_channels
from autosel.models import load_pipeline
from autosel.optimise.selection import Selection
from autosel.space import SearchSpace

PLANTED = 5


@pytest.fixture(scope="module")
def planted_pipeline():
    """The SD3 twin with a huge bias on one output channel of block 0's feed-forward."""
    pipeline = load_pipeline("tiny-sd3-random")
    with torch.no_grad():
        pipeline.transformer.transformer_blocks[0].ff.net[2].bias[PLANTED] += 1e4
    return pipeline


def test_a_channel_far_above_the_median_is_massive_and_others_are_not():
    value = torch.randn(2, 16, 4, 4)
    value[:, 3] += 500.0
    assert massive_channels(value) == [3]
    assert massive_channels(torch.randn(2, 16, 4, 4)) == []


def test_the_factor_sets_the_threshold():
    value = torch.randn(2, 16, 4, 4).abs() + 1.0
    value[:, 7] *= 50.0
    assert massive_channels(value, factor=100) == [] and massive_channels(value, factor=10) == [7]


def test_the_report_gives_the_energy_share_and_non_finite_counts():
    value = torch.ones(1, 4, 2, 2)
    value[:, 0] = 1000.0
    value[0, 1, 0, 0] = float("nan")
    report = inspect_channels(value)
    assert report.massive_channels == [0] and report.energy_share > 0.99 and (report.nan, report.inf) == (1, 0)


def test_drop_massive_zeroes_only_the_massive_channels():
    value = torch.randn(2, 8, 4, 4)
    value[:, 2] += 1e4
    dropped = drop_massive(value)
    assert torch.equal(dropped[:, 2], torch.zeros_like(dropped[:, 2]))
    assert torch.equal(dropped[:, 3:], value[:, 3:])


def test_inspect_finds_a_planted_massive_channel(planted_pipeline):
    denoiser = Denoiser(planted_pipeline, device="cpu", name="planted")
    rows = inspect_model("planted", timesteps=[50], ids=["vit-block0-out"], images=4, progress=False, denoiser=denoiser)
    assert [(r.id, r.massive_channels[:1]) for r in rows] == [("vit-block0-out", [PLANTED])]
    assert rows[0].energy_share > 0.9


def test_inspect_finds_nothing_in_the_untouched_twin():
    rows = inspect_model("tiny-sd3-random", timesteps=[50, 260], images=4, progress=False, device="cpu")
    assert rows and not any(r.massive_channels for r in rows)


def test_extraction_with_drop_massive_returns_the_planted_channel_as_zeros(planted_pipeline):
    config = FeatureConfig.from_dict({
        "model": {"name": "tiny-sd3-random"}, "extraction": {"image_size": 64},
        "activations": [{"id": "vit-block0-out", "timestep": 50, "post": "drop-massive"}],
    })
    features = FeatureExtractor(config, pipeline=planted_pipeline, device="cpu")(torch.rand(2, 3, 64, 64))["vit-block0-out"]
    assert torch.equal(features[:, PLANTED], torch.zeros_like(features[:, PLANTED]))
    assert features[:, PLANTED + 1].abs().sum() > 0


def test_a_searched_variant_becomes_a_drop_massive_activation():
    space = SearchSpace(model="tiny-sd3-random")
    config = Selection((("vit-block1-out:drop-massive", 260, 1.0), ("vit-block2-out", 50, 1.0))).to_config(space)
    assert [(a.id, a.post) for a in config.activations] == [("vit-block1-out", "drop-massive"), ("vit-block2-out", "none")]


def test_inspect_command_prints_json_rows_with_massive_channels(run_cli):
    result = run_cli("inspect", "--model", "tiny-pixart-random", "--timesteps", "50", "--images", "2",
                     "--ids", "vit-block1-*", "--format", "json", "--no-progress")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {row["id"] for row in rows} >= {"vit-block1-out", "vit-block1-norm-in"}
    assert all({"id", "timestep", "massive_channels"} <= set(row) for row in rows)


def test_inspect_command_refuses_an_id_glob_that_matches_nothing(run_cli):
    result = run_cli("inspect", "--model", "tiny-flux-random", "--ids", "up-level*")
    assert result.returncode == 2 and "matches no activation" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
