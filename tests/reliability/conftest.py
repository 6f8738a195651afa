"""The fault-injection suite: every bad input or fault a user can cause ends in one clear line
on stderr and the documented exit code, with no traceback, no secret printed and nothing lost.

Most cases run the real ``autosel`` application in this process (``cli_main``: the Typer app
the console script runs, through ``CliRunner``, a fraction of a subprocess's start-up); kill -9
and concurrency cases use real subprocesses.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fixture_data import small_search_space

PRESET = Path(__file__).resolve().parents[2] / "results" / "presets" / "meng-practical-sd15.yaml"


@pytest.fixture
def cli_main():
    """Run ``autosel ARGS…`` in this process, as ``run_cli`` does (see ``tests/conftest.py``)."""
    from cli_runner import invoke_cli

    return invoke_cli


def assert_one_error_line(outcome, *fragments: str, code: int = 2) -> str:
    """The outcome failed with ``code`` and exactly one stderr line holding every fragment."""
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert outcome.code == code, (outcome.code, outcome.stderr)
    assert "Traceback" not in outcome.stderr + outcome.stdout, outcome.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), outcome.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "tiny-small.yaml"
    path.write_text(yaml.safe_dump(small_search_space(trials=6)))
    return path


SEARCH_TRIALS = 6


@pytest.fixture(scope="session")
def small_space_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("space") / "tiny-small.yaml"
    path.write_text(yaml.safe_dump(small_search_space(trials=SEARCH_TRIALS)))
    return path


def search_command(autosel_command, space_file, out, cache, *options: str) -> list[str]:
    """``autosel search`` of the small space on the tiny model, in this process's stead."""
    return [*autosel_command, *options, "search", "--space", str(space_file), "--workers", "0", "--out", str(out),
            "--cache-dir", str(cache)]


@pytest.fixture(scope="session")
def reference_search(tmp_path_factory, small_space_file) -> Path:
    """The output folder of one uninterrupted, unwatched search of the small space."""
    from cli_runner import invoke_cli

    root = tmp_path_factory.mktemp("reference")
    done = invoke_cli(*search_command([], small_space_file, root / "out", root / "cache", "--quiet"))
    assert done.returncode == 0, done.stderr
    return root / "out"


def search_results(out: Path):
    """What a search decided: its trials (number, state, score, selection) and best.yaml without provenance."""
    import pandas as pd

    folder = out / "tiny" / "correspondence"
    trials = pd.read_csv(folder / "trials.csv")[["number", "state", "score", "selection", "channels"]]
    return trials, (folder / "best.yaml").read_text().split("provenance:")[0]
