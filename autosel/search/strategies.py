"""Search strategies: which selection a trial evaluates next.

Every strategy runs through the same ask/tell loop: samplers (TPE, random) propose through
Optuna; exhaustive enumeration and greedy forward selection enqueue fixed parameters.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from autosel.errors import InvalidInputError, did_you_mean
from autosel.search.selection import Candidate

STRATEGIES = ("greedy-tpe", "tpe", "random", "greedy", "exhaustive")


class Strategy:
    """A sampler plus, optionally, fixed parameters to enqueue before each ask."""

    name = "tpe"

    def __init__(self, candidates: Sequence[Candidate], max_activations: int, seed: int, budget: int | None = None) -> None:
        self.candidates, self.max_activations, self.seed = list(candidates), max_activations, seed

    def sampler(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(seed=self.seed, multivariate=True, constant_liar=True, n_startup_trials=10)

    def next_params(self, study: optuna.Study) -> dict[str, Any] | None:
        """Parameters to enqueue for the next trial (``None``: let the sampler choose)."""
        return None

    def exhausted(self, study: optuna.Study) -> bool:
        """True when the strategy has nothing left to propose."""
        return False

    def waiting(self, study: optuna.Study) -> bool:
        """True when the next proposal depends on trials still running (ask nothing new yet)."""
        return False


class RandomStrategy(Strategy):
    name = "random"

    def sampler(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=self.seed)


def params_of(items: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """Trial parameters for (candidate id, timestep index) slots at weight 1."""
    params: dict[str, Any] = {"n": len(items)}
    for slot, (candidate, timestep) in enumerate(items):
        params[f"a{slot}"] = candidate
        params[f"t{slot}"] = timestep
        if len(items) > 1:
            params[f"w{slot}"] = 1.0
    return params


class ExhaustiveStrategy(RandomStrategy):
    """Every set of up to K distinct candidates × their cached timesteps, at weight 1."""

    name = "exhaustive"

    def __init__(self, candidates: Sequence[Candidate], max_activations: int, seed: int, budget: int | None = None) -> None:
        super().__init__(candidates, max_activations, seed)
        self._plan: Iterator[dict[str, Any]] = iter(self.enumerate())
        self._done = False

    def enumerate(self) -> Iterator[dict[str, Any]]:
        ids = [c.id for c in self.candidates]
        for size in range(1, self.max_activations + 1):
            for members in itertools.combinations(range(len(ids)), size):
                for steps in itertools.product(*(range(len(self.candidates[m].timesteps)) for m in members)):
                    yield params_of([(ids[m], s) for m, s in zip(members, steps)])

    def next_params(self, study: optuna.Study) -> dict[str, Any] | None:
        try:
            return next(self._plan)
        except StopIteration:
            self._done = True
            return None

    def exhausted(self, study: optuna.Study) -> bool:
        return self._done


class GreedyStrategy(RandomStrategy):
    """Forward selection: every single (candidate, timestep); then, from the best set so far,
    every one-activation extension; stop when no extension improves or K is reached."""

    name = "greedy"

    def __init__(self, candidates: Sequence[Candidate], max_activations: int, seed: int, budget: int | None = None) -> None:
        super().__init__(candidates, max_activations, seed)
        self._queue: list[dict[str, Any]] = []
        self._base: list[tuple[str, int]] = []
        self._base_score = float("-inf")
        self._round: list[tuple[list[tuple[str, int]], dict[str, Any]]] = []
        self._done = False
        self._extend()

    def _extend(self) -> None:
        used = {name for name, _ in self._base}
        self._round = []
        for candidate in self.candidates:
            if candidate.id in used:
                continue
            for step in range(len(candidate.timesteps)):
                items = self._base + [(candidate.id, step)]
                self._round.append((items, params_of(items)))
        self._queue = [params for _, params in self._round]
        if not self._round:
            self._done = True

    def next_params(self, study: optuna.Study) -> dict[str, Any] | None:
        if not self._queue and not self._done:
            if self.waiting(study):
                return None
            scores = {}
            for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
                scores[tuple(sorted(trial.params.items()))] = trial.values[0]
            best_items, best_score = None, self._base_score
            for items, params in self._round:
                score = scores.get(tuple(sorted(params.items())))
                if score is not None and score > best_score:
                    best_items, best_score = items, score
            if best_items is None or len(best_items) >= self.max_activations:
                self._done = True
                return None
            self._base, self._base_score = best_items, best_score
            self._extend()
        return self._queue.pop(0) if self._queue else None

    def exhausted(self, study: optuna.Study) -> bool:
        return self._done

    def waiting(self, study: optuna.Study) -> bool:
        """With several workers the round's last trials may still run (or be queued for a
        retry) when its queue is spent: the round is judged only once every one has finished."""
        if self._queue or self._done:
            return False
        round_keys = {tuple(sorted(params.items())) for _, params in self._round}
        finished, unfinished = set(), set()
        states = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
        for trial in study.get_trials(deepcopy=False, states=states):
            params = trial.params or trial.system_attrs.get("fixed_params") or {}
            key = tuple(sorted(params.items()))
            if key in round_keys:
                (finished if trial.state == TrialState.COMPLETE else unfinished).add(key)
        return bool(unfinished - finished)


class GreedyThenTPE(GreedyStrategy):
    """The default: greedy forward selection (every single, then one-activation extensions of
    the best set), then TPE from there on, sampling around what greedy found. On the tiny model
    greedy alone reaches 98% of the exhaustive optimum within 25 trials but then stops; TPE
    alone needs 50–100 trials and misses in some seeds (``experiments/search_quality.py``)."""

    name = "greedy-tpe"

    def sampler(self) -> optuna.samplers.BaseSampler:
        return Strategy.sampler(self)

    def exhausted(self, study: optuna.Study) -> bool:
        return False  # after greedy, TPE goes on until the trial budget is spent


def make_strategy(name: str, candidates: Sequence[Candidate], max_activations: int, seed: int) -> Strategy:
    """The strategy called ``name`` (greedy-tpe, tpe, random, greedy, exhaustive)."""
    kinds = {"greedy-tpe": GreedyThenTPE, "tpe": Strategy, "random": RandomStrategy, "greedy": GreedyStrategy,
             "exhaustive": ExhaustiveStrategy}
    if name not in kinds:
        raise InvalidInputError(f"unknown strategy '{name}':{did_you_mean(name, kinds)} use {', '.join(STRATEGIES)}")
    return kinds[name](candidates, max_activations, seed)
