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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState

from autosel.catalog import ActivationPoint
from autosel.optimise.selection import Candidate, suggest
from autosel.optimise.strategies import Strategy
from autosel.progress import progress_bar

log = logging.getLogger("autosel.search")

MAX_SKIPS_IN_A_ROW = 20
"""Proposals skipped in a row (being evaluated elsewhere right now) before a duplicate is copied instead."""

TrialResult = tuple[int, "dict[str, Any] | None", "Exception | None"]
"""(trial number, the worker's result with its ``score``, or the error that stopped it)."""


class TrialRunner(Protocol):
    """What the driver needs of the workers (:class:`autosel.runtime.pools.WorkerPool` is one)."""

    def idle(self) -> int:
        """Workers free to take a trial."""

    def submit(self, tag: int, items: Sequence[Any], entries: Sequence[tuple[str, int]]) -> None:
        """Start scoring a selection on an idle worker; its result comes back from :meth:`poll` under ``tag``."""

    def poll(self, timeout: float) -> Iterator[TrialResult]:
        """The trials finished within ``timeout`` seconds."""


class Start(Enum):
    """What became of one proposal (:meth:`Driver._start_one`)."""

    SUBMITTED = "submitted"  # sent to a worker
    COPIED = "copied"  # a selection the study already scored: its value copied
    SKIPPED = "skipped"  # being evaluated elsewhere right now: failed, to be proposed again
    STOP = "stop"  # nothing to start now


@dataclass
class DriveStats:
    """What one driver did."""

    evaluated: int = 0
    duplicates: int = 0
    retried: int = 0


class Driver:
    """Runs trials until ``study`` holds a number of COMPLETE ones (or the strategy runs dry).

    Args:
        study: the study (created by :func:`~autosel.optimise.study.open_study`).
        storage: the RDB storage the study lives in (heartbeats are recorded on it).
        strategy: what to propose next (see :mod:`autosel.optimise.strategies`).
        pool: the workers that score a selection on the cache (``submit``/``poll``/``idle``).
        candidates, catalogue: what a trial may choose from, and their shapes and depths.
        max_activations, channel_budget: the selection's limits (the budget is a constraint).
        progress: show a progress bar.
        poll_seconds: how long to wait for a worker (or another driver) per round.
    """

    def __init__(
        self,
        study: optuna.Study,
        storage: optuna.storages.RDBStorage,
        strategy: Strategy,
        pool: TrialRunner,
        candidates: Sequence[Candidate],
        catalogue: Mapping[str, ActivationPoint],
        max_activations: int,
        channel_budget: int | None,
        progress: bool = True,
        poll_seconds: float = 1.0,
    ) -> None:
        self.study, self.storage, self.strategy, self.pool = study, storage, strategy, pool
        self.candidates, self.catalogue = list(candidates), catalogue
        self.max_activations, self.channel_budget = max_activations, channel_budget
        self.progress, self.poll_seconds = progress, poll_seconds
        self.entries = sorted({(c.id, t) for c in candidates for t in c.timesteps})  # (id, t) the cache holds
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.study_id = storage.get_study_id_from_name(study.study_name)
        self.stats = DriveStats()
        self.in_flight: dict[int, tuple[optuna.trial.Trial, int]] = {}
        self.skipped = 0

    def run(self, trials: int) -> DriveStats:
        """Drive until the study holds ``trials`` COMPLETE trials; returns what this driver did.
        Interrupted (Ctrl-C, SIGTERM), it marks its running trials failed and queues them again."""
        try:
            return self._drive(trials)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the running trials are failed and queued again
            self.fail_in_flight("interrupted")
            raise

    def fail_in_flight(self, reason: str) -> list[int]:
        """Mark the trials this driver has running failed (``interrupted`` = ``reason``) and queue
        each again with its parameters, so a resumed search runs it; returns their numbers."""
        numbers = []
        for number, (trial, _) in list(self.in_flight.items()):
            try:
                trial.set_user_attr("interrupted", reason)
                self.study.tell(trial, state=TrialState.FAIL)
                self.study.enqueue_trial(trial.params, user_attrs={"retry_of": number})
            except Exception as error:  # noqa: BLE001 - the store is gone too: its heartbeat makes it stale later
                log.warning("trial %d could not be marked failed (%s); it will be found stale", number, type(error).__name__)
                continue
            numbers.append(number)
        self.in_flight.clear()
        return numbers

    def _drive(self, trials: int) -> DriveStats:
        study, strategy = self.study, self.strategy
        grace_seconds = 2 * (self.storage.get_heartbeat_interval() or 60) if self.storage.grace_period is None \
            else self.storage.grace_period
        with progress_bar("trials", trials, self.progress) as advance:
            shown = 0
            while True:
                optuna.storages.fail_stale_trials(study)
                fail_orphaned_trials(study, grace_seconds)
                all_trials = study.get_trials(deepcopy=False)
                complete = sum(t.state == TrialState.COMPLETE for t in all_trials)
                running = sum(t.state == TrialState.RUNNING for t in all_trials)
                advance(min(complete, trials) - shown)
                shown = min(complete, trials)
                if (complete >= trials or strategy.exhausted(study)) and not self.in_flight:
                    break
                while self.pool.idle() > 0 and complete + running < trials and not strategy.exhausted(study):
                    outcome = self._start_one(trials)
                    if outcome is Start.STOP:
                        break
                    if outcome is Start.COPIED:
                        complete += 1
                    elif outcome is Start.SUBMITTED:
                        running += 1
                if not self.in_flight:  # waiting on other drivers' trials: do not hammer the store
                    time.sleep(self.poll_seconds)
                self._collect()
        return self.stats

    def _trial_id(self, trial: optuna.trial.Trial) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)

    def _planned(self, trial_id: int) -> bool:
        """True when the trial's parameters were queued (a fixed plan's proposal or a retry)."""
        return "fixed_params" in self.storage.get_trial(trial_id).system_attrs

    def _start_one(self, trials: int) -> Start:
        """Ask one trial and submit, copy or skip it."""
        study, strategy = self.study, self.strategy
        params = strategy.next_params(study)
        if params is not None:
            study.enqueue_trial(params)
        elif strategy.exhausted(study):
            return Start.STOP
        elif not strategy.sampling(study) and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return Start.STOP  # the plan needs running trials' results first, and nothing is queued (retries)
        trial = study.ask()
        trial_id = self._trial_id(trial)
        if not strategy.sampling(study) and not self._planned(trial_id):
            # another driver asked the trial this one queued: the sampler filled in, but the plan decides
            trial.set_user_attr("skipped", "sampled while a fixed plan is in progress")
            study.tell(trial, state=TrialState.FAIL)
            return Start.STOP
        self.storage.record_heartbeat(trial_id)
        trial.set_user_attr("heartbeat_of", trial.number)  # see fail_orphaned_trials
        trial.set_user_attr("driver", self.name)
        now = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE))
        done_now = sum(t.state == TrialState.COMPLETE for t in now)
        ahead = sum(t.state == TrialState.RUNNING and t.number < trial.number for t in now)
        if done_now + ahead >= trials:  # another driver took the last slots
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=TrialState.FAIL)
            return Start.STOP
        selection = suggest(trial, self.candidates, self.max_activations)
        channels, cost = selection.channels(self.catalogue), selection.cost(self.catalogue)
        budget = self.channel_budget
        trial.set_user_attr("selection", selection.key)
        trial.set_user_attr("items", [list(item) for item in selection.items])
        trial.set_user_attr("channels", channels)
        trial.set_user_attr("cost", cost)
        trial.set_user_attr("feasible", budget is None or channels <= budget)
        trial.set_constraint("channels", float(channels - budget) if budget else 0.0)
        # set-then-check: of two drivers proposing the same selection at once, at most one evaluates it
        same = [
            t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE))
            if t.number != trial.number and t.user_attrs.get("selection") == selection.key
            and t.user_attrs.get("duplicate_of") is None
        ]
        previous = next((t for t in same if t.state == TrialState.COMPLETE), None)
        # a fixed plan's proposal (greedy, exhaustive) that another driver ran meanwhile is a
        # stale view, not a choice: skip it and ask the plan again instead of copying the score
        planned = self._planned(trial_id) and "retry_of" not in trial.user_attrs
        if previous is not None and (not planned or self.skipped >= MAX_SKIPS_IN_A_ROW):
            trial.set_user_attr("duplicate_of", previous.number)
            study.tell(trial, previous.values[0])
            self.stats.duplicates += 1
            return Start.COPIED
        if same and self.skipped < MAX_SKIPS_IN_A_ROW:  # being evaluated right now, or just now (another worker or driver)
            trial.set_user_attr("skipped", f"{'run' if previous else 'running'} as trial {same[0].number}")
            study.tell(trial, state=TrialState.FAIL)
            self.skipped += 1
            return Start.SKIPPED
        self.skipped = 0
        self.pool.submit(trial.number, selection.items, self.entries)
        self.in_flight[trial.number] = (trial, trial_id)
        return Start.SUBMITTED

    def _collect(self) -> None:
        """Record the trials the workers finished; re-queue those whose worker failed."""
        for number, result, error in self.pool.poll(self.poll_seconds):
            trial, _ = self.in_flight.pop(number)
            if error is not None:
                if getattr(error, "node_lost", False):  # set by the Ray pool
                    log.warning("node lost; trial %d queued again", number)
                else:
                    log.warning("trial %d failed on its worker (%s); it is queued again", number, type(error).__name__)
                self.study.tell(trial, state=TrialState.FAIL)
                self.study.enqueue_trial(trial.params, user_attrs={"retry_of": number})
                self.stats.retried += 1
                continue
            self.study.tell(trial, result["score"])
            self.stats.evaluated += 1
        for _, trial_id in self.in_flight.values():
            self.storage.record_heartbeat(trial_id)


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
