"""`autosel extract`, `export` and `import` as a user runs them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open

CONFIG = """\
model: {name: tiny-random}
extraction: {image_size: 64}
activations:
  - {id: up-level1-repeat1-vit-block0-cross-q, timestep: 50}
  - {id: up-level2-repeat0-res-out, timestep: 200}
aggregation: {pca_dim: 4}
"""


@pytest.fixture
def workspace(tmp_path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg", "sub/c.png"):
        Image.fromarray((rng.random((40, 56, 3)) * 255).astype("uint8")).save(folder / name)
    (folder / "broken.png").write_bytes(b"not an image at all")
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    return tmp_path, folder, config


def test_extract_writes_one_tensor_per_image_and_id_and_skips_broken_images(run_cli, workspace):
    root, folder, config = workspace
    out = root / "feats.safetensors"
    result = run_cli("extract", "--config", str(config), "--images", str(folder), "--out", str(out), "--batch-size", "2")
    assert result.returncode == 0, result.stderr
    assert "broken.png" in result.stderr and "warning" in result.stderr
    with safe_open(str(out), "pt") as handle:
        keys = set(handle.keys())
        metadata = handle.metadata()
        shape = tuple(handle.get_tensor("sub/c.png/up-level1-repeat1-vit-block0-cross-q").shape)
    assert keys == {f"{image}/{i}" for image in ("a.png", "b.jpg", "sub/c.png")
                    for i in ("up-level1-repeat1-vit-block0-cross-q", "up-level2-repeat0-res-out")}
    assert shape == (64, 8, 8)
    assert json.loads(metadata["autosel.images"]) == ["a.png", "b.jpg", "sub/c.png"]
    assert "up-level2-repeat0-res-out" in metadata["autosel.config"]


def test_extract_aggregate_writes_one_map_per_image(run_cli, workspace):
    root, folder, config = workspace
    out = root / "agg.safetensors"
    result = run_cli("extract", "-c", str(config), "-i", str(folder / "a.png"), "-i", str(folder / "sub"), "-o", str(out), "--aggregate")
    assert result.returncode == 0, result.stderr
    with safe_open(str(out), "pt") as handle:
        assert set(handle.keys()) == {"a.png", "c.png"}
        assert tuple(handle.get_tensor("a.png").shape) == (4, 16, 16)
        assert handle.metadata()["autosel.layout"] == "aggregated"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("model: {name: tiny\nactivations: [", "not valid YAML"),
        (CONFIG.replace("up-level2-repeat0-res-out", "up-level2-repeat0-res-outt"), "Closest ids: up-level2-repeat0-res-out"),
        (CONFIG.replace("timestep: 200", "timestep: late"), "activations[1].timestep: Input should be a valid integer"),
    ],
    ids=["bad-yaml", "unknown-id", "wrong-type"],
)
def test_bad_configs_are_one_line_errors_with_exit_2(run_cli, workspace, content, expected):
    root, folder, config = workspace
    config.write_text(content)
    result = run_cli("extract", "--config", str(config), "--images", str(folder), "--out", str(root / "x.safetensors"))
    assert result.returncode == 2
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (root / "x.safetensors").exists()


def test_missing_config_file_is_named(run_cli, workspace):
    root, folder, _ = workspace
    result = run_cli("extract", "--config", str(root / "absent.yaml"), "--images", str(folder), "--out", str(root / "x.st"))
    assert result.returncode == 2
    assert "absent.yaml: no such feature config file" in result.stderr


def test_export_then_import_through_the_cli(run_cli, tmp_path):
    preset = "results/presets/meng-practical-sd15.yaml"
    exported = run_cli("export", "--config", preset, "--to", "gdf", "--out", str(tmp_path / "gdf"))
    assert exported.returncode == 0, exported.stderr
    assert "noise seed" in exported.stderr  # reported, not silently dropped
    imported = run_cli("import", "--from", str(tmp_path / "gdf" / "layers.json"), "--out", str(tmp_path / "back.yaml"))
    assert imported.returncode == 0, imported.stderr
    from autosel.config import FeatureConfig

    original, back = FeatureConfig.from_yaml(preset), FeatureConfig.from_yaml(tmp_path / "back.yaml")
    assert (back.model.name, back.ids, back.timesteps) == (original.model.name, original.ids, original.timesteps)


def test_import_of_an_unknown_id_exits_2_with_close_matches(run_cli, tmp_path):
    layers = tmp_path / "layers.json"
    layers.write_text(json.dumps({"up-level1-repeat0-vit-block0-crossq": True}))
    result = run_cli("import", "--from", str(layers), "--model", "sd15", "--out", str(tmp_path / "x.yaml"))
    assert result.returncode == 2
    assert "up-level1-repeat0-vit-block0-cross-q" in result.stderr
    assert not (tmp_path / "x.yaml").exists()
