"""PixArt-, SD3- and FLUX-layout pipeline folders saved with `save_pretrained`, run through
`autosel catalog`, `extract`, `sweep` and `search` as a user would."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from safetensors import safe_open

from autosel.models import load_pipeline

FAMILIES = {"pixart": "tiny-pixart-random", "sd3": "tiny-sd3-random", "flux": "tiny-flux-random"}
DIT_ID = re.compile(r"^(dit-in|vit-block\d+-[a-z-]+)$")


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def folder(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(f"{request.param}-pipeline")
    load_pipeline(FAMILIES[request.param]).save_pretrained(path)
    return path


def test_catalog_of_a_transformer_folder_lists_vit_block_ids(run_cli, folder):
    result = run_cli("catalog", "--model", str(folder), "--image-size", "64", "--format", "json")
    assert result.returncode == 0, result.stderr
    points = json.loads(result.stdout)
    assert points and all(DIT_ID.match(p["id"]) for p in points)
    assert {p["height"] for p in points if p["kind"] == "vit-block-out"} == {8}


def test_extract_from_a_transformer_folder(run_cli, folder, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray((np.random.default_rng(0).random((48, 72, 3)) * 255).astype("uint8")).save(images / name)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"name": str(folder)}, "extraction": {"image_size": [64, 96]},
        "activations": [{"id": "vit-block1-out", "timestep": 260}, {"id": "vit-block0-norm-in", "timestep": 50, "post": "drop-massive"}],
    }))
    out = tmp_path / "feats.safetensors"
    result = run_cli("extract", "--config", str(config), "--images", str(images), "--out", str(out))
    assert result.returncode == 0, result.stderr
    with safe_open(str(out), "pt") as handle:
        assert set(handle.keys()) == {f"{i}/{a}" for i in ("a.png", "b.png") for a in ("vit-block1-out", "vit-block0-norm-in")}
        assert tuple(handle.get_tensor("a.png/vit-block1-out").shape)[1:] == (8, 12)


@pytest.mark.slow
def test_sweep_and_search_on_a_transformer_folder_write_a_best_config(run_cli, folder, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({
        "model": str(folder), "image_size": 64, "timesteps": [50, 260],
        "candidates": {"include": ["vit-block*-out", "vit-block*-norm-in"], "exclude": [], "post": ["none", "drop-massive"]},
        "proxy": {"pairs": 12},
        "search": {"top_m": 4, "timesteps_per_candidate": 1, "max_activations": 2, "trials": 6,
                   "cache_resolution": 8, "cache_dim": None, "confirm_top": 1},
    }))
    out = tmp_path / "results"
    swept = run_cli("sweep", "--model", str(folder), "--space", str(space), "--out", str(out), "--no-progress")
    assert swept.returncode == 0, swept.stderr
    rows = pd.read_csv(next((out / folder.name / "correspondence").glob("sweep-*.csv")))
    assert {"vit-block0-out", "vit-block0-out:drop-massive"} <= set(rows["id"])
    searched = run_cli("search", "--model", str(folder), "--space", str(space), "--out", str(out), "--workers", "0", "--no-progress")
    assert searched.returncode == 0, searched.stderr
    best = yaml.safe_load((out / folder.name / "correspondence" / "best.yaml").read_text())
    assert best["model"]["name"] == str(folder)
    assert best["activations"] and all(DIT_ID.match(a["id"]) for a in best["activations"])
    assert 0.0 <= best["score"]["value"] <= 1.0
