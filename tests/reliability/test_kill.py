"""kill -9 at every stage of a search (screening, caching, trials, confirmation), resumed each
time: the study ends with exactly the requested trials, the same selections and best config as
an uninterrupted search, no completed trial lost, and no partial file in the cache."""

from __future__ import annotations

import json
import signal
import subprocess

import optuna
import pytest
from cli_runner import invoke_cli
from conftest import SEARCH_TRIALS, search_command, search_results

STAGES = ("screening t=", "caching ", "cache:", "search:")
"""Kill points: the first screening forward, the start of caching (writing the entries the
screen kept), the trials (right after the cache is ready), the confirmation (right after the
trials)."""


def run_until(command: list[str], stage: str) -> bool:
    """Run ``command`` (with --log-json) and kill -9 it at the first stage message starting with
    ``stage``; True when it was killed there (a fast run may finish first)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        try:
            message = json.loads(line).get("message", "")
        except json.JSONDecodeError:
            continue
        if message.startswith(stage):
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
    process.wait()
    return False


def completed_trials(database) -> dict[int, tuple]:
    from autosel.optimise.study import open_storage, quiet_optuna

    quiet_optuna()
    storage = open_storage(f"sqlite:///{database}")
    if not optuna.get_all_study_summaries(storage):
        return {}
    study = optuna.load_study(study_name="tiny-correspondence", storage=storage)
    return {t.number: (t.values[0], t.user_attrs["selection"]) for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))}


@pytest.mark.slow
def test_a_search_killed_at_every_stage_ends_as_an_uninterrupted_one(tmp_path, small_space_file, autosel_command, reference_search):
    out, cache = tmp_path / "out", tmp_path / "cache"
    command = search_command(autosel_command, small_space_file, out, cache, "--log-json")
    kept: dict[int, tuple] = {}
    killed = []
    for stage in STAGES:
        killed.append(run_until(command, stage))
        now = completed_trials(out / "autosel.db") if (out / "autosel.db").exists() else {}
        assert all(now.get(number) == values for number, values in kept.items())  # nothing completed is lost
        kept = now
    assert killed == [True] * len(STAGES)
    final = invoke_cli(*command[len(autosel_command):])  # the last resume runs to the end: no process needed
    assert final.returncode == 0, final.stderr
    assert not [path for path in cache.iterdir() if ".partial" in path.name or path.name.endswith(".tmp")]
    resumed, alone = search_results(out), search_results(reference_search)
    assert len(resumed[0][resumed[0]["state"] == "COMPLETE"]) == SEARCH_TRIALS
    assert set(resumed[0]["selection"].dropna()) == set(alone[0]["selection"].dropna())
    assert resumed[1] == alone[1]
