"""The ask/tell loop: the driver owns the study; workers only evaluate.

``--trials N`` counts COMPLETE trials of the study in total, across reruns and drivers. A trial
whose worker died is failed and re-queued with the same parameters; trials of a dead driver are
found stale by their heartbeat and re-queued the same way. A selection already evaluated in
the study is not evaluated again: its values are copied (``duplicate_of``).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from autosel.catalog import ActivationPoint
from autosel.progress import progress_bar
from autosel.search.selection import Candidate, Selection, suggest
from autosel.search.strategies import Strategy

log = logging.getLogger("autosel.search")


@dataclass
class DriveStats:
    """What one driver did."""

    evaluated: int = 0
    duplicates: int = 0
    retried: int = 0
    surplus: int = 0


def optimise(
    study: optuna.Study,
    strategy: Strategy,
    pool: Any,
    candidates: Sequence[Candidate],
    catalogue: Mapping[str, ActivationPoint],
    trials: int,
    max_activations: int,
    channel_budget: int | None,
    progress: bool = True,
    poll_seconds: float = 1.0,
) -> DriveStats:
    """Run trials until the study holds ``trials`` COMPLETE ones (or the strategy runs dry)."""
    stats = DriveStats()
    pairs = sorted({(c.id, t) for c in candidates for t in c.timesteps})
    storage = study._storage  # heartbeats have no public ask/tell API: record them on the storage itself
    driver = f"{socket.gethostname()}:{os.getpid()}"
    in_flight: dict[int, tuple[optuna.trial.Trial, Selection]] = {}
    skipped = 0
    with progress_bar("trials", trials, progress) as advance:
        shown = 0
        while True:
            optuna.storages.fail_stale_trials(study)
            all_trials = study.get_trials(deepcopy=False)
            complete = [t for t in all_trials if t.state == TrialState.COMPLETE]
            running = sum(t.state == TrialState.RUNNING for t in all_trials)
            advance(min(len(complete), trials) - shown)
            shown = min(len(complete), trials)
            if (len(complete) >= trials or strategy.exhausted(study)) and not in_flight:
                break
            while pool.idle() > 0 and len(complete) + running < trials and not strategy.exhausted(study):
                params = strategy.next_params(study)
                if params is not None:
                    study.enqueue_trial(params)
                elif strategy.exhausted(study):
                    break
                elif strategy.waiting(study) and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                    break  # the strategy needs running trials' results first, and nothing is queued
                trial = study.ask()
                storage.record_heartbeat(trial._trial_id)
                running += 1
                now = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE))
                done_now = sum(t.state == TrialState.COMPLETE for t in now)
                ahead = sum(t.state == TrialState.RUNNING and t.number < trial.number for t in now)
                if done_now + ahead >= trials:  # another driver took the last slots
                    trial.set_user_attr("surplus", True)
                    study.tell(trial, state=TrialState.FAIL)
                    stats.surplus += 1
                    break
                selection = suggest(trial, candidates, max_activations)
                channels, cost = selection.channels(catalogue), selection.cost(catalogue)
                feasible = channel_budget is None or channels <= channel_budget
                trial.set_user_attr("selection", selection.key)
                trial.set_user_attr("items", [list(item) for item in selection.items])
                trial.set_user_attr("channels", channels)
                trial.set_user_attr("cost", cost)
                trial.set_user_attr("feasible", feasible)
                trial.set_constraint("channels", float(channels - channel_budget) if channel_budget else 0.0)
                trial.set_user_attr("driver", driver)
                # set-then-check: of two drivers proposing the same selection at once, at most one evaluates it
                same = [
                    t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE))
                    if t.number != trial.number and t.user_attrs.get("selection") == selection.key
                    and t.user_attrs.get("duplicate_of") is None
                ]
                previous = next((t for t in same if t.state == TrialState.COMPLETE), None)
                if previous is not None:
                    trial.set_user_attr("duplicate_of", previous.number)
                    study.tell(trial, previous.values[0])
                    stats.duplicates += 1
                    complete.append(study.get_trials(deepcopy=False)[trial.number])
                    running -= 1
                    continue
                if same and skipped < 20:  # being evaluated right now (another worker or driver)
                    trial.set_user_attr("skipped", f"running as trial {same[0].number}")
                    study.tell(trial, state=TrialState.FAIL)
                    skipped += 1
                    running -= 1
                    continue
                skipped = 0
                pool.submit(trial.number, selection.items, pairs)
                in_flight[trial.number] = (trial, selection)
            if not in_flight:  # waiting on other drivers' trials: do not hammer the store
                time.sleep(poll_seconds)
            for number, result, error in pool.poll(poll_seconds):
                trial, selection = in_flight.pop(number)
                if error is not None:
                    log.warning("trial %d failed on its worker (%s); it is queued again", number, type(error).__name__)
                    study.tell(trial, state=TrialState.FAIL)
                    study.enqueue_trial(trial.params, user_attrs={"retry_of": number})
                    stats.retried += 1
                    continue
                study.tell(trial, result["score"])
                stats.evaluated += 1
            for trial, _ in in_flight.values():
                storage.record_heartbeat(trial._trial_id)
    return stats
