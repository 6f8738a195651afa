"""The default SQLite store under concurrent use: processes opening a new store at once, and a
reader (`autosel studies`, `report`, `dashboard`) polling it while a search writes it."""

from __future__ import annotations

import subprocess
import time

import pandas as pd
import pytest
from conftest import search_command, search_results


@pytest.mark.slow
def test_openers_creating_one_new_sqlite_store_at_once_all_succeed(tmp_path):
    """Eight openers released together on each of five new files (threads: each opens its own
    connections and lock file, as processes do). Without the schema lock about half of them
    failed with "table studies already exists"."""
    import threading

    from autosel.optimise.study import open_storage
    from autosel.store import SweepStore

    failures: list[str] = []

    def open_store(url: str, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            open_storage(url)
            SweepStore(url)
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            failures.append(str(error))

    for attempt in range(5):
        url, barrier = f"sqlite:///{tmp_path / f'store{attempt}.db'}", threading.Barrier(8)
        openers = [threading.Thread(target=open_store, args=(url, barrier)) for _ in range(8)]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join(timeout=120)
    assert failures == []


def test_sqlite_stores_are_opened_in_wal_mode_with_a_busy_timeout(tmp_path):
    import sqlite3

    from autosel.optimise.study import open_storage
    from autosel.store import SQLITE_BUSY_SECONDS, engine_options

    url = f"sqlite:///{tmp_path / 'autosel.db'}"
    open_storage(url)
    assert sqlite3.connect(tmp_path / "autosel.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert engine_options(url)["connect_args"]["timeout"] == SQLITE_BUSY_SECONDS


@pytest.mark.slow
def test_a_reader_polling_through_a_search_changes_nothing(tmp_path, small_space_file, autosel_command, reference_search):
    from autosel.report import study_summaries, write_report
    from autosel.store import SweepStore

    url = f"sqlite:///{tmp_path / 'watched' / 'autosel.db'}"
    search = subprocess.Popen(search_command(autosel_command, small_space_file, tmp_path / "watched", tmp_path / "cache", "--quiet"),
                              stderr=subprocess.PIPE, text=True)
    polls, reports = 0, []
    while search.poll() is None:
        if (tmp_path / "watched" / "autosel.db").exists():
            summaries = study_summaries(url)  # what `autosel studies` prints
            SweepStore(url).rows()
            if summaries and summaries[0]["complete"] and not reports:  # what `autosel report` reads
                reports.append(write_report(summaries[0]["study"], url, tmp_path / "report"))
            polls += 1
        time.sleep(0.05)
    assert search.returncode == 0, search.stderr.read()
    assert polls >= 3
    watched, alone = search_results(tmp_path / "watched"), search_results(reference_search)
    pd.testing.assert_frame_equal(watched[0], alone[0])
    assert watched[1] == alone[1]
