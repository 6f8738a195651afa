"""Images PIL refuses (decompression bombs, truncated or non-image files) are skipped with a
warning in extraction and named as an error in a dataset; 16-bit and palette images convert
to the right 8-bit RGB instead of being clipped."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_error_line
from PIL import Image

from autosel.errors import DatasetError
from autosel.images import ImageReadError, read_rgb

TINY_CONFIG = "model: {name: tiny}\nextraction: {image_size: 64}\nactivations: [{id: mid-vit-out, timestep: 50}]\n"


def write_bomb(path: Path, side: int = 40_000) -> Path:
    """A valid PNG header announcing side×side pixels (far over PIL's limit) in a few bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


def write_truncated(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def test_a_sixteen_bit_grey_png_keeps_its_grey_levels(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    pixels = np.asarray(read_rgb(tmp_path / "ramp16.png"))
    assert pixels.shape == (64, 64, 3)
    assert abs(pixels.mean() - 127.5) < 1 and (pixels == 255).mean() < 0.01  # PIL's own convert: 99.6% at 255


def test_a_palette_png_with_transparency_converts_to_its_colours(tmp_path):
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 200, 30, 40] + [0] * 762)
    image.info["transparency"] = 0
    image.save(tmp_path / "palette.png", transparency=0)
    assert tuple(np.asarray(read_rgb(tmp_path / "palette.png"))[0, 0]) == (200, 30, 40)


@pytest.mark.parametrize("make, reason", [
    (lambda p: write_bomb(p / "bomb.png"), "decompression bomb"),
    (lambda p: write_truncated(p / "cut.png"), "truncated"),
    (lambda p: (p / "text.png").write_text("not an image") and p / "text.png", "not a readable image"),
])
def test_an_unreadable_image_is_one_error_naming_the_file(tmp_path, make, reason):
    path = make(tmp_path)
    with pytest.raises(ImageReadError, match=reason) as raised:
        read_rgb(path)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


def test_extraction_skips_bad_images_with_a_warning_and_keeps_the_good_ones(cli_main, tmp_path):
    from safetensors import safe_open

    images = tmp_path / "images"
    images.mkdir()
    for n in range(2):
        Image.fromarray(np.full((32, 32, 3), 60 * n, np.uint8)).save(images / f"good{n}.png")
    write_bomb(images / "bomb.png")
    write_truncated(images / "cut.png")
    (tmp_path / "tiny.yaml").write_text(TINY_CONFIG)
    outcome = cli_main("extract", "--config", tmp_path / "tiny.yaml", "--images", images, "--out", tmp_path / "f.safetensors")
    assert outcome.code == 0, outcome.stderr
    warnings = [line for line in outcome.stderr.strip().splitlines() if line.startswith("warning")]
    assert len(warnings) == 2 and "Traceback" not in outcome.stderr  # beside them: progress lines (no terminal)
    assert any("bomb.png" in w and "decompression bomb" in w for w in warnings)
    assert any("cut.png" in w and "truncated" in w for w in warnings)
    with safe_open(tmp_path / "f.safetensors", "pt") as written:
        assert sorted(written.keys()) == ["good0.png/mid-vit-out", "good1.png/mid-vit-out"]


def test_a_truncated_image_in_a_segmentation_folder_is_named_in_one_line(cli_main, label_folder, tmp_path):
    victim = sorted((label_folder / "images").iterdir())[-1]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    outcome = cli_main("evaluate", "--config", config, "--task", "segmentation", "--dataset", f"folder:{label_folder}",
                       "--no-progress")
    assert_one_error_line(outcome, victim.name, "not a readable image")


def test_a_decompression_bomb_in_spair_is_named_when_the_dataset_loads(spair_root):
    import json

    from autosel.data.spair import load_spair

    pair = json.loads(sorted((spair_root / "PairAnnotation" / "trn").glob("*.json"))[0].read_text())
    victim = write_bomb(spair_root / "JPEGImages" / pair["category"] / pair["src_imname"])
    with pytest.raises(DatasetError, match="decompression bomb") as raised:
        load_spair(spair_root, "trn")
    assert victim.name in str(raised.value)
