"""The ask/tell loop: the driver owns the study; workers only evaluate.

``--trials N`` counts COMPLETE trials of the study in total, across reruns and drivers. A trial
whose worker died is failed and re-queued with the same parameters; trials of a dead driver are
found stale by their heartbeat and re-queued the same way; a trial whose driver died between
asking it and recording its first heartbeat (Optuna never finds those stale) is failed once it
is older than the grace period. A selection already evaluated in the study is not evaluated
again: its values are copied (``duplicate_of``).
"""

from __future__ import annotations

import datetime as dt
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
    grace_seconds = _grace_seconds(storage)
    with progress_bar("trials", trials, progress) as advance:
        shown = 0
        while True:
            optuna.storages.fail_stale_trials(study)
            fail_orphaned_trials(study, grace_seconds)
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
                elif not strategy.sampling(study) and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                    break  # the plan needs running trials' results first, and nothing is queued (retries)
                trial = study.ask()
                if not strategy.sampling(study) and "fixed_params" not in storage.get_trial_system_attrs(trial._trial_id):
                    # another driver asked the trial this one queued: the sampler filled in, but the plan decides
                    trial.set_user_attr("skipped", "sampled while a fixed plan is in progress")
                    study.tell(trial, state=TrialState.FAIL)
                    break
                storage.record_heartbeat(trial._trial_id)
                trial.set_user_attr("heartbeat_of", trial.number)  # see fail_orphaned_trials
                trial.set_user_attr("driver", driver)
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
                # set-then-check: of two drivers proposing the same selection at once, at most one evaluates it
                same = [
                    t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE))
                    if t.number != trial.number and t.user_attrs.get("selection") == selection.key
                    and t.user_attrs.get("duplicate_of") is None
                ]
                previous = next((t for t in same if t.state == TrialState.COMPLETE), None)
                # a fixed plan's proposal (greedy, exhaustive) that another driver ran meanwhile is a
                # stale view, not a choice: skip it and ask the plan again instead of copying the score
                planned = ("fixed_params" in storage.get_trial_system_attrs(trial._trial_id)
                           and "retry_of" not in trial.user_attrs)
                if previous is not None and (not planned or skipped >= 20):
                    trial.set_user_attr("duplicate_of", previous.number)
                    study.tell(trial, previous.values[0])
                    stats.duplicates += 1
                    complete.append(study.get_trials(deepcopy=False)[trial.number])
                    running -= 1
                    continue
                if same and skipped < 20:  # being evaluated right now, or just now (another worker or driver)
                    trial.set_user_attr("skipped", f"{'run' if previous else 'running'} as trial {same[0].number}")
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


def _grace_seconds(storage: Any) -> float:
    """The storage's heartbeat grace period (Optuna wraps an RDBStorage in a cache layer)."""
    backend = getattr(storage, "_backend", storage)
    interval = getattr(backend, "heartbeat_interval", None) or 60
    return getattr(backend, "grace_period", None) or 2 * interval


def fail_orphaned_trials(study: optuna.Study, grace_seconds: float) -> list[int]:
    """Fail RUNNING trials that never got past their first heartbeat and started more than
    ``grace_seconds`` ago; returns their numbers. The driver marks a trial right after its first
    heartbeat (``heartbeat_of`` = its own number: a retry copies its predecessor's attributes).

    Optuna's stale-trial check skips trials without a heartbeat record, so a driver killed
    between ``ask`` and its first heartbeat would leave a trial RUNNING forever, and the study
    would wait on it forever. Nothing was evaluated for such a trial, so it is not re-queued.
    """
    oldest = dt.datetime.now() - dt.timedelta(seconds=grace_seconds)
    orphans = [
        trial for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if trial.user_attrs.get("heartbeat_of") != trial.number
        and trial.datetime_start is not None and trial.datetime_start < oldest
    ]
    for trial in orphans:
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # another driver failed it first
            continue
        log.warning("trial %d was asked by a driver that died before its first heartbeat; it is failed", trial.number)
    return [trial.number for trial in orphans]
