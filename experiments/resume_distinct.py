"""Distinct selections a search evaluates for the same --trials: one uninterrupted driver, a
driver killed with SIGKILL mid-search and resumed, and two drivers sharing one PostgreSQL study.

Each run is `autosel search --model tiny` as a user types it (the embedded default space,
--workers 0, a shared activation cache). A selection counted once however many trials hold it;
duplicates are trials whose score was copied from an earlier one. Before the strategy kept its
state in the study, the resumed run re-walked the greedy plan and two drivers followed the same
order (issue 15's probe: 25 and 21 distinct, against 35 and about 28 for one driver).

Run: python experiments/resume_distinct.py [--trials 40] [--kill-after 12] [--postgres URL]
(about 6 minutes on 2 CPU cores; the PostgreSQL part is skipped when the server is unreachable).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna

AUTOSEL = [str(Path(sys.executable).with_name("autosel"))]


def search(out: Path, cache: Path, trials: int, study: str, storage: str | None = None) -> list[str]:
    command = [*AUTOSEL, "--quiet", "search", "--model", "tiny", "--workers", "0", "--trials", str(trials),
               "--study", study, "--out", str(out), "--cache-dir", str(cache)]
    return command + (["--storage", storage] if storage else [])


def counts(storage: str, study: str) -> tuple[int, int, int]:
    """(COMPLETE trials, distinct selections among them, copied duplicates)."""
    from autosel.optimise.study import open_storage, quiet_optuna

    quiet_optuna()
    trials = optuna.load_study(study_name=study, storage=open_storage(storage)).get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return len(trials), len({t.user_attrs["selection"] for t in trials}), sum("duplicate_of" in t.user_attrs for t in trials)


def run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr}")


def killed_and_resumed(out: Path, cache: Path, trials: int, kill_after: int, storage: str) -> None:
    driver = subprocess.Popen(search(out, cache, 10 * trials, "resumed"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while True:
        time.sleep(0.5)
        try:
            if counts(storage, "resumed")[0] >= kill_after:
                break
        except KeyError:  # the study does not exist yet
            pass
        if driver.poll() is not None:
            sys.exit(driver.stderr.read().decode())
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    print(f"  killed after {counts(storage, 'resumed')[0]} complete trials")
    run(search(out, cache, trials, "resumed"))


def two_drivers(out: Path, cache: Path, trials: int, admin_url: str) -> str | None:
    import sqlalchemy as sa

    name = f"autosel_bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # noqa: BLE001 - no server: that part is skipped
        print(f"  two drivers skipped: no PostgreSQL at {admin_url} ({str(error).splitlines()[0]})")
        return None
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    run(search(out / "screen", cache, 1, "screen-only", url))  # screen once, so both drivers start from the store
    drivers = [subprocess.Popen(search(out / f"driver{n}", cache, trials, "two", url), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE) for n in range(2)]
    for driver in drivers:
        if driver.wait() != 0:
            sys.exit(driver.stderr.read().decode())
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--kill-after", type=int, default=12)
    parser.add_argument("--postgres", default=os.environ.get("AUTOSEL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"))
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        out, cache = root / "out", root / "cache"
        storage = f"sqlite:///{out / 'autosel.db'}"
        started = time.perf_counter()
        run(search(out, cache, options.trials, "one"))
        rows = [("one uninterrupted driver", *counts(storage, "one"))]
        killed_and_resumed(out, cache, options.trials, options.kill_after, storage)
        rows.append((f"killed (SIGKILL) after >= {options.kill_after}, resumed", *counts(storage, "resumed")))
        url = two_drivers(root / "pg", cache, options.trials, options.postgres)
        if url:
            rows.append(("two drivers, one PostgreSQL study", *counts(url, "two")))
        print(f"autosel search --model tiny --trials {options.trials} (greedy-tpe, default space)")
        print(f"{'run':<40} {'complete':>8} {'distinct':>8} {'copied':>7}")
        for name, complete, distinct, copied in rows:
            print(f"{name:<40} {complete:>8} {distinct:>8} {copied:>7}")
        print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
