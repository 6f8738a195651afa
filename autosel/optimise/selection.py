"""A combination of activations as the search sees it: encoding in a trial, cost, scoring on
the cache, and the feature config it becomes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from autosel.aggregation import aggregate
from autosel.catalog import ActivationPoint
from autosel.config import FeatureConfig
from autosel.space import SearchSpace
from autosel.tasks import Task, TaskResult
from autosel.variants import split_variant

WEIGHTS = (0.5, 1.0, 2.0)
TRIAL_ENCODING = "id@t"
"""How trial parameters spell a selection (stored with each study: an older encoding's trials
cannot be continued by this one)."""


@dataclass(frozen=True)
class Candidate:
    """A screened activation kept for the search, with the timesteps cached for it."""

    id: str
    timesteps: tuple[int, ...]
    channels: int
    depth: float


@dataclass(frozen=True)
class Selection:
    """Distinct activations (an id at a timestep; one id may come at several timesteps), each
    with one weight (weight 1: plain concat)."""

    items: tuple[tuple[str, int, float], ...]

    @property
    def key(self) -> str:
        """Canonical text: the same set in any order gives the same key."""
        return "+".join(f"{name}@{t}x{w:g}" for name, t, w in sorted(self.items))

    def channels(self, catalogue: Mapping[str, ActivationPoint]) -> int:
        """Total channels at full width (what the extracted feature map will have)."""
        return sum(catalogue[name].channels for name, _, _ in self.items)

    def cost(self, catalogue: Mapping[str, ActivationPoint]) -> float:
        """Denoiser work per image: for each distinct timestep, the depth fraction the forward
        must reach (it stops after the deepest activation of that timestep)."""
        deepest: dict[int, float] = {}
        for name, t, _ in self.items:
            deepest[t] = max(deepest.get(t, 0.0), catalogue[name].depth)
        return float(sum(deepest.values()))

    def activations(self) -> list[dict[str, Any]]:
        """The feature config's activation entries (``id``, ``timestep``, ``weight``, ``post``)."""
        activations = []
        for name, t, w in self.items:
            base_id, post = split_variant(name)
            activations.append({"id": base_id, "timestep": t, "weight": w, "post": post})
        return activations

    def to_config(self, space: SearchSpace) -> FeatureConfig:
        """This selection as a feature config with ``space``'s model and extraction sections."""
        return space.feature_config(self.activations())


def slot_choice(name: str, timestep: int) -> str:
    """A slot's value in a trial: ``"{id}@{t}"`` (one categorical per slot, so equal parameters
    always mean the same selection)."""
    return f"{name}@{timestep}"


def parse_slot_choice(choice: str) -> tuple[str, int]:
    """(id, timestep) of a slot value made by :func:`slot_choice`."""
    name, timestep = choice.rsplit("@", 1)
    return name, int(timestep)


def slot_choices(candidates: Sequence[Candidate]) -> list[str]:
    """Every value a slot can take: each candidate at each of its cached timesteps."""
    return [slot_choice(c.id, t) for c in candidates for t in c.timesteps]


def same_activation(first: tuple[str, int], second: tuple[str, int]) -> bool:
    """Whether two (candidate, timestep) slots would extract the same activation: one id at one
    timestep (``x`` and its variant ``x:drop-massive`` count as one id). The same id at another
    timestep is another activation: multi-timestep fusion."""
    return first[1] == second[1] and split_variant(first[0])[0] == split_variant(second[0])[0]


def suggest(trial: Any, candidates: Sequence[Candidate], max_activations: int, weights: bool = True) -> Selection:
    """Draw a selection in an Optuna trial: ``n`` slots, each an ``"{id}@{t}"`` (a candidate at
    one of its cached timesteps) and a weight. A candidate may come back at another of its
    timesteps (the same id fused over timesteps); a slot repeating an id at a timestep already
    chosen (the variant of a chosen id included) counts once (its first slot).

    Parameters keep one distribution each (Optuna needs that), so the search space is fixed:
    ``n`` ∈ 1…K, ``a{k}`` ∈ candidates × their timesteps, ``w{k}`` ∈ {0.5, 1, 2} (only with
    ``weights``; otherwise every weight is 1).
    """
    choices = slot_choices(candidates)
    count = trial.suggest_int("n", 1, max_activations)
    chosen: dict[tuple[str, int], float] = {}
    for slot in range(count):
        name, timestep = parse_slot_choice(trial.suggest_categorical(f"a{slot}", choices))
        weight = trial.suggest_categorical(f"w{slot}", WEIGHTS) if count > 1 and weights else 1.0
        if not any(same_activation((name, timestep), other) for other in chosen):
            chosen[(name, timestep)] = float(weight)
    # sorted: the same set always concatenates in the same order (stable configs and scores)
    return Selection(tuple(sorted((name, t, w) for (name, t), w in chosen.items())))


def combine_cached(arrays: Mapping[tuple[str, int], np.ndarray], selection: Selection, index: int) -> torch.Tensor:
    """Image ``index``'s combined map from cached arrays: the default aggregation (the one
    best.yaml records), on cached proxy-resolution maps."""
    maps = [torch.from_numpy(np.asarray(arrays[(name, t)][index], dtype=np.float32))[None] for name, t, _ in selection.items]
    return aggregate(maps, [weight for _, _, weight in selection.items])[0]


def score_cached(task: Task, arrays: Mapping[tuple[str, int], np.ndarray], selection: Selection) -> TaskResult:
    """The task's result for ``selection`` on cached features (no denoiser forward)."""
    scorer = task.scorer()
    for index in task.image_order():
        scorer.add(index, combine_cached(arrays, selection, index))
    return scorer.result()
