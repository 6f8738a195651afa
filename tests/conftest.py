"""Shared fixtures. Every test runs offline: no model hub is reachable on CI machines."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from cli_runner import CliResult, invoke_cli

os.environ["HF_HUB_OFFLINE"] = "1"  # inherited by the CLI subprocesses too


@pytest.fixture(scope="session")
def autosel_command() -> list[str]:
    """The installed console script (falls back to ``python -m autosel.cli``)."""
    script = Path(sys.executable).with_name("autosel")
    if script.exists():
        return [str(script)]
    found = shutil.which("autosel")
    return [found] if found else [sys.executable, "-m", "autosel.cli"]


@pytest.fixture
def run_cli():
    """Run ``autosel ARGS…`` in this process (see :func:`invoke_cli`); tests that need a real
    process (kill -9, concurrent drivers, a server) use ``autosel_command`` instead."""

    def run(*args: object, timeout: float | None = None, env: dict[str, str] | None = None) -> CliResult:
        return invoke_cli(*args, env=env)

    return run


@pytest.fixture(scope="session")
def tiny_xl_folder(tmp_path_factory) -> Path:
    """The tiny SDXL-like pipeline saved as a local diffusers folder."""
    from autosel.models import load_pipeline

    folder = tmp_path_factory.mktemp("tiny-xl-pipeline")
    load_pipeline("tiny-xl-random").save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def finished_search(tmp_path_factory) -> str:
    """A store holding study 'tiny-correspondence' from a real (small, in-process) search of
    10 trials, with its screen, its confirmed configs and the tiny model's presets (about a minute)."""
    from fixture_data import small_search_space

    import autosel
    from autosel.space import SearchSpace

    folder = tmp_path_factory.mktemp("study")
    autosel.search(SearchSpace.from_dict(small_search_space(trials=10)),
                   autosel.RunConfig(out=folder, cache_dir=folder / "cache", progress=False), autosel.Resources(workers=0))
    return f"sqlite:///{folder / 'autosel.db'}"


@pytest.fixture
def spair_root(tmp_path) -> Path:
    """A small SPair-71k-format dataset (3 categories, 6 pairs per split, 96×64 images)."""
    from fixture_data import write_spair

    return write_spair(tmp_path / "SPair-71k")


@pytest.fixture
def label_folder(tmp_path) -> Path:
    """A segmentation folder: images/ + labels/ (PNG), classes.txt, train.txt (4 train, 8 test)."""
    from fixture_data import write_label_folder

    return write_label_folder(tmp_path / "parts")


@pytest.fixture
def postgres_url():
    """A fresh, empty PostgreSQL database on the machine's server (dropped afterwards).

    The server (127.0.0.1:5432, trust auth, database ``test``) runs on every project machine
    and in CI, so there the test fails instead of skipping when it cannot be reached.
    """
    import uuid

    import sqlalchemy as sa

    admin_url = os.environ.get("AUTOSEL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            name = f"autosel_test_{uuid.uuid4().hex[:12]}"
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # noqa: BLE001 - any failure to reach the server
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {admin_url} is required in CI: {error}")
        pytest.skip(f"no PostgreSQL server at {admin_url} on this machine: {str(error).splitlines()[0]}")
    yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
