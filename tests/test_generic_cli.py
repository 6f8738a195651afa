"""Folders of diffusers families that autosel has no adapter for (the generic-path twins saved
with `save_pretrained`), run through `catalog`, `inspect`, `extract`, `sweep` and `search` as a
user would: no code written for any of them."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from safetensors import safe_open

from autosel.models.tiny import build_tiny_pipeline
from autosel.models.twins import TWIN_SPECS

DIT_ID = re.compile(r"^(dit-in|vit-block\d+-[a-z-]+)$")


@pytest.fixture(scope="module", params=sorted(TWIN_SPECS))
def folder(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param.removeprefix("tiny-").removesuffix("-random"))
    build_tiny_pipeline(request.param).save_pretrained(path)
    return path


def _images(folder):
    folder.mkdir()
    for name, seed in (("a.png", 0), ("b.png", 1)):
        pixels = (np.random.default_rng(seed).random((48, 72, 3)) * 255).astype("uint8")
        Image.fromarray(pixels).save(folder / name)
    return folder


def test_catalog_of_a_generic_folder_lists_its_blocks_in_forward_order(run_cli, folder):
    result = run_cli("catalog", "--model", str(folder), "--image-size", "64", "--format", "json")
    assert result.returncode == 0, result.stderr
    points = json.loads(result.stdout)
    assert points and all(DIT_ID.match(point["id"]) for point in points)
    outs = [point["id"] for point in points if point["kind"] == "vit-block-out"]
    assert outs == [f"vit-block{i}-out" for i in range(len(outs))]


def test_inspect_of_a_generic_folder_reports_every_block_output(run_cli, folder):
    result = run_cli(
        "inspect", "--model", str(folder), "--timesteps", "260", "--image-size", "64",
        "--ids", "vit-block*-out", "--images", "2", "--all", "--format", "json", "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows and {row["id"] for row in rows} >= {"vit-block0-out"}


def test_extract_from_a_generic_folder_is_deterministic_and_non_square(run_cli, folder, tmp_path):
    images = _images(tmp_path / "images")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"name": str(folder)}, "extraction": {"image_size": [64, 96]},
        "activations": [{"id": "vit-block0-out", "timestep": 260}, {"id": "vit-block0-norm-in", "timestep": 50}],
    }))
    tensors = []
    for run in ("first", "second"):
        out = tmp_path / f"{run}.safetensors"
        result = run_cli("extract", "--config", str(config), "--images", str(images), "--out", str(out))
        assert result.returncode == 0, result.stderr
        with safe_open(str(out), "pt") as handle:
            assert set(handle.keys()) == {f"{i}/{a}" for i in ("a.png", "b.png") for a in ("vit-block0-out", "vit-block0-norm-in")}
            tensors.append(handle.get_tensor("a.png/vit-block0-out"))
    height, width = tensors[0].shape[-2:]
    assert width / height == pytest.approx(1.5)
    assert (tensors[0] == tensors[1]).all()


@pytest.mark.slow
def test_sweep_and_search_on_a_generic_folder_write_a_best_config(run_cli, folder, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({
        "model": str(folder), "image_size": 64, "timesteps": [260],
        "candidates": {"include": ["vit-block*-out", "vit-block0-norm-in"], "exclude": [], "post": ["none"]},
        "proxy": {"pairs": 8},
        "search": {"top_m": 3, "timesteps_per_candidate": 1, "max_activations": 2, "trials": 4,
                   "cache_resolution": 8, "cache_dim": None, "confirm_top": 1},
    }))
    out = tmp_path / "results"
    swept = run_cli("sweep", "--model", str(folder), "--space", str(space), "--out", str(out), "--no-progress")
    assert swept.returncode == 0, swept.stderr
    rows = pd.read_csv(next((out / folder.name / "correspondence").glob("sweep-*.csv")))
    assert "vit-block0-out" in set(rows["id"])
    searched = run_cli("search", "--model", str(folder), "--space", str(space), "--out", str(out), "--workers", "0", "--no-progress")
    assert searched.returncode == 0, searched.stderr
    best = yaml.safe_load((out / folder.name / "correspondence" / "best.yaml").read_text())
    assert best["activations"] and all(DIT_ID.match(a["id"]) for a in best["activations"])
    assert 0.0 <= best["score"]["value"] <= 1.0


def test_a_folder_that_cannot_be_onboarded_fails_in_one_line_and_writes_nothing(run_cli, tmp_path):
    folder = tmp_path / "no-blocks"
    build_tiny_pipeline("tiny-chroma-random").save_pretrained(folder)
    config_file = folder / "transformer" / "config.json"
    config = json.loads(config_file.read_text())
    config.update(num_layers=0, num_single_layers=0)  # a transformer with no blocks to take features from
    config_file.write_text(json.dumps(config))
    out = tmp_path / "results"
    for command in (("catalog",), ("sweep", "--out", str(out), "--no-progress"), ("search", "--out", str(out), "--workers", "0")):
        result = run_cli(*command, "--model", str(folder), "--image-size", "64")
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().count("\n") == 0
        assert "no repeated transformer blocks found in ChromaTransformer2DModel" in result.stderr
    assert not out.exists()
