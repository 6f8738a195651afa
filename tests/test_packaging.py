"""What ``pip install autosel`` (a wheel, not this checkout) gets: the shipped search spaces and
presets, and the tiny models, found from any working directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the checkout (the build writes build/ and *.egg-info there)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", ".cache", "build", "*.egg-info", "__pycache__", ".pytest_cache", "*.db", "*.db-*", "*.lock"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(work / "dist"), str(source)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return next((work / "dist").glob("autosel-*.whl"))


@pytest.mark.slow
def test_the_wheel_holds_every_search_space_preset_and_tiny_model(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    spaces = [f"autosel/shipped/search_spaces/{p.name}" for p in (ROOT / "search_spaces").glob("*.yaml")]
    presets = [f"autosel/shipped/presets/{p.name}" for p in (ROOT / "results" / "presets").glob("*.yaml")]
    assert spaces and presets and set(spaces + presets) <= names
    for model in ("tiny_pipeline", "tiny_dit_pipeline"):
        assert any(n.startswith(f"autosel/models/{model}/") and n.endswith(".safetensors") for n in names), model


@pytest.mark.slow
def test_an_installed_wheel_finds_its_space_and_presets_from_an_empty_folder(wheel, tmp_path):
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    probe = ("import autosel, autosel.space as s, autosel.pipeline as p;"
             "print(autosel.__file__); print(s.space_file('tiny')); print(sorted(x.stem for x, _ in p.presets_items('tiny')))")
    shown = subprocess.run([sys.executable, "-c", probe], cwd=empty, capture_output=True, text=True, check=False,
                           env={**os.environ, "PYTHONPATH": str(site)})
    assert shown.returncode == 0, shown.stderr
    module, space, presets = shown.stdout.splitlines()
    assert module.startswith(str(site)) and space.startswith(str(site)) and space.endswith("tiny.yaml")
    assert presets == "['legacy-tiny']"
