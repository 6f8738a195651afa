"""Errors raised inside Ray workers reach the user as the same one line and exit code as in
this process; a crash or an unexpected exception is one line too (exit code 1)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import ray.exceptions as ray_errors

from autosel.errors import DatasetError
from autosel.runtime.workers import WorkerError, unwrap_worker_error


def test_a_worker_s_own_autosel_error_is_passed_on_unchanged():
    original = DatasetError("pairs/0001.json: trg_bndbox must be [x1, y1, x2, y2] (numbers)")
    assert unwrap_worker_error(ray_errors.RayTaskError("screen", "Traceback…", original)) is original


def test_an_unexpected_worker_exception_is_one_line_naming_its_type():
    error = unwrap_worker_error(ray_errors.RayTaskError("evaluate", "Traceback…", ValueError("shapes differ\nmore detail")))
    assert isinstance(error, WorkerError) and error.exit_code == 1
    assert str(error).startswith("a search worker failed: ValueError: shapes differ") and "\n" not in str(error)


def test_a_dead_worker_is_one_line():
    error = unwrap_worker_error(ray_errors.ActorDiedError())
    assert isinstance(error, WorkerError) and str(error).startswith("a search worker died:") and "\n" not in str(error)


def test_errors_from_elsewhere_are_left_alone():
    error = KeyError("x")
    assert unwrap_worker_error(error) is error


@pytest.mark.slow
def test_a_model_that_fails_to_load_on_a_ray_worker_is_one_line_and_leaves_no_study(tiny_xl_folder, tmp_path, autosel_command):
    """The folder passes every check that reads no weights; its replica fails to load on the worker.
    With --log-json every stderr line, Ray's own warnings included, is a JSON object."""
    broken = shutil.copytree(tiny_xl_folder, tmp_path / "broken-pipeline")
    for weights in (broken / "unet").glob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    done = subprocess.run(
        [*autosel_command, "--log-json", "search", "--model", str(broken), "--dataset", "shapes", "--workers", "1",
         "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=600,
    )
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]  # fails on any plain line
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert lines[-1]["level"] == "error" and lines[-1]["exit_code"] == 2
    assert lines[-1]["message"].startswith(f"cannot load a diffusers pipeline from '{broken}'")
    from autosel.report import study_summaries

    assert study_summaries(f"sqlite:///{tmp_path / 'out' / 'autosel.db'}") == []
