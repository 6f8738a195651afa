"""A combination of activations as the search sees it: encoding in a trial, cost, scoring on
the cache, and the feature config it becomes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from autosel.catalog import ActivationPoint
from autosel.config import FeatureConfig
from autosel.numerics import l2_normalize
from autosel.tasks import Task, TaskResult

WEIGHTS = (0.5, 1.0, 2.0)


@dataclass(frozen=True)
class Candidate:
    """A screened activation kept for the search, with the timesteps cached for it."""

    id: str
    timesteps: tuple[int, ...]
    channels: int
    depth: float


@dataclass(frozen=True)
class Selection:
    """Distinct activations, each at one timestep with one weight (weight 1: plain concat)."""

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

    def to_config(self, base: FeatureConfig, **sections: Any) -> FeatureConfig:
        """``base`` with this selection's activations (other sections replaced as given)."""
        from autosel.search.variants import split_variant

        activations = []
        for name, t, w in self.items:
            base_id, post = split_variant(name)
            activations.append({"id": base_id, "timestep": t, "weight": w, "post": post})
        return base.replace(activations=activations, **sections)


def suggest(trial: Any, candidates: Sequence[Candidate], max_activations: int, weights: bool = True) -> Selection:
    """Draw a selection in an Optuna trial: ``n`` slots, each a candidate (by index), a timestep
    (index into the candidate's cached ones) and a weight; a candidate drawn twice counts once.

    Parameters keep one distribution each (Optuna needs that), so the search space is fixed:
    ``n`` ∈ 1…K, ``a{k}`` ∈ candidates, ``t{k}`` ∈ 0…T-1, ``w{k}`` ∈ {0.5, 1, 2} (only with
    ``weights``; otherwise every weight is 1).
    """
    ids = [c.id for c in candidates]
    depth = max(len(c.timesteps) for c in candidates)
    count = trial.suggest_int("n", 1, max_activations)
    chosen: dict[str, tuple[int, float]] = {}
    for slot in range(count):
        name = trial.suggest_categorical(f"a{slot}", ids)
        index = trial.suggest_int(f"t{slot}", 0, depth - 1)
        weight = trial.suggest_categorical(f"w{slot}", WEIGHTS) if count > 1 and weights else 1.0
        candidate = candidates[ids.index(name)]
        chosen.setdefault(name, (candidate.timesteps[min(index, len(candidate.timesteps) - 1)], float(weight)))
    # sorted: the same set always concatenates in the same order (stable configs and scores)
    return Selection(tuple(sorted((name, t, w) for name, (t, w) in chosen.items())))


def combine_cached(arrays: Mapping[tuple[str, int], np.ndarray], selection: Selection, index: int) -> torch.Tensor:
    """Image ``index``'s combined map from cached arrays: every activation resized to the
    largest cached grid, L2-normalised over channels, weighted, concatenated (the config's
    default aggregation, on cached proxy-resolution maps)."""
    maps = [torch.from_numpy(np.asarray(arrays[(name, t)][index], dtype=np.float32)) for name, t, _ in selection.items]
    size = max((m.shape[-2:] for m in maps), key=lambda hw: hw[0] * hw[1])
    combined = []
    for value, (_, _, weight) in zip(maps, selection.items):
        if tuple(value.shape[-2:]) != tuple(size):
            value = F.interpolate(value[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
        combined.append(l2_normalize(value, dim=0) * weight)
    return torch.cat(combined)


def score_cached(task: Task, arrays: Mapping[tuple[str, int], np.ndarray], selection: Selection) -> TaskResult:
    """The task's result for ``selection`` on cached features (no denoiser forward)."""
    scorer = task.scorer()
    for index in task.image_order():
        scorer.add(index, combine_cached(arrays, selection, index))
    return scorer.result()
