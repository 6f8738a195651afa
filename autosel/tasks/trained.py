"""``correspondence-trained``: the seed codebase's correspondence protocol, a learned head on the
chosen activations instead of training-free nearest neighbours.

As gdf's ``correspondence/task-corres.py`` with ``--algorithm conv`` (its defaults): the
combined feature maps are upsampled bilinearly to the working grid, one 3×3 convolution
without bias (C → C channels, ``aggregation_network.py``) is trained on pairs of the training
split with the symmetric CLIP loss (cross-entropy of the source keypoints' cosine similarities
with every target cell, and back, logit scale 1/0.07), AdamW (lr 5e-4, weight decay 0.01), 2
epochs of at most 5,000 pairs each, one pair per step; then the evaluation pairs are matched
by nearest neighbour on the head's output and scored by PCK exactly as ``correspondence``.
Training pairs come from a split neither role scores (shapes ``train``, SPair ``trn``); the
initialisation and the pair order are seeded.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from autosel.data.records import CorrespondenceData
from autosel.data.specs import load_correspondence, load_training_pairs
from autosel.tasks.base import Scorer, TaskResult, register_task
from autosel.tasks.correspondence import ALPHAS, CorrespondenceTask, _CorrespondenceScorer, pair_categories
from autosel.tasks.matching import linear_resampling

LOGIT_SCALE = math.log(1 / 0.07)


@register_task("correspondence-trained")
class TrainedCorrespondenceTask(CorrespondenceTask):
    """Correspondence through a trained 3×3 convolution head (gdf's protocol, see the module).

    Args:
        data: the pairs to score (the role's split).
        train: the pairs the head learns from (another split).
        epochs, steps_per_epoch, lr, weight_decay: gdf's defaults (2, 5000, 5e-4, 0.01).
        seed: seed of the head's initialisation and of the pair order.
        Other arguments as :class:`CorrespondenceTask`.
    """

    proxy_options = (*CorrespondenceTask.proxy_options, "train_pairs")

    def __init__(
        self,
        data: CorrespondenceData,
        train: CorrespondenceData,
        epochs: int = 2,
        steps_per_epoch: int = 5000,
        lr: float = 5e-4,
        weight_decay: float = 0.01,
        seed: int = 0,
        alphas: tuple[float, ...] = ALPHAS,
        working_size: int | tuple[int, int] = 64,
        soft_window: int = 0,
        temperature: float = 0.05,
        query: str = "bilinear",
    ) -> None:
        super().__init__(data, alphas, working_size, soft_window, temperature, query)
        self.train = train
        self.epochs, self.steps_per_epoch, self.lr, self.weight_decay, self.seed = epochs, steps_per_epoch, lr, weight_decay, seed
        self.losses: list[float] = []

    @classmethod
    def from_spec(  # type: ignore[override]
        cls,
        dataset: str,
        role: str = "search",
        pairs: int | None = None,
        pairs_per_category: int | None = None,
        shapes_size: int = 64,
        seed: int = 0,
        train_pairs: int | None = None,
        **options: Any,
    ) -> TrainedCorrespondenceTask:
        data = load_correspondence(dataset, role, pairs, pairs_per_category, shapes_size, seed)
        train = load_training_pairs(dataset, train_pairs, shapes_size, seed)
        return cls(data, train, seed=seed, **options)

    @property
    def images(self) -> list[Any]:  # type: ignore[override]
        """The training pairs' images, then the scored pairs' images."""
        return list(self.train.images) + list(self.data.images)

    def image_categories(self) -> list[str | None]:
        """The training pairs' images' categories, then the scored pairs' images'."""
        return pair_categories(self.train) + pair_categories(self.data)

    def image_order(self) -> list[int]:
        return list(range(len(self.images)))

    def scorer(self) -> Scorer:
        return _TrainedScorer(self)

    def fit_head(self, maps: dict[int, torch.Tensor]) -> torch.nn.Conv2d:
        """The head trained on the training pairs (``maps``: C×h×w by training image index, at
        their own resolution)."""
        channels = next(iter(maps.values())).shape[0]
        generator = torch.Generator().manual_seed(self.seed)
        head = torch.nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        with torch.no_grad():
            torch.nn.init.kaiming_uniform_(head.weight, a=math.sqrt(5), generator=generator)  # nn.Conv2d's own init
        optimizer = torch.optim.AdamW(head.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        order = np.random.default_rng(self.seed)
        for _ in range(self.epochs):
            for number in order.permutation(len(self.train.pairs))[: self.steps_per_epoch]:
                pair = self.train.pairs[number]
                visible = np.asarray(pair.visible, dtype=bool)
                if not visible.any():
                    continue
                # upsampled per step, not held for every training image: at real sizes (C in the
                # thousands, a 64×64 grid) that would be tens of GB
                source = head(self._upsample(maps[pair.source])[None])[0]
                target = head(self._upsample(maps[pair.target])[None])[0]
                loss = self._clip_loss(source, target, pair.source_points[visible], pair.target_points[visible],
                                       pair.source_size, pair.target_size)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                self.losses.append(float(loss.detach()))
        return head.eval()

    def _upsample(self, value: torch.Tensor) -> torch.Tensor:
        rows = linear_resampling(value.shape[-2], self.working_size[0])
        cols = linear_resampling(value.shape[-1], self.working_size[1])
        return rows @ value.float() @ cols.T

    def _cells(self, points: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
        """Flat working-grid indices of pixel points (the cell each point falls in)."""
        height, width = self.working_size
        x = np.clip(np.floor((np.asarray(points)[:, 0] + 0.5) * width / size[1]), 0, width - 1)
        y = np.clip(np.floor((np.asarray(points)[:, 1] + 0.5) * height / size[0]), 0, height - 1)
        return torch.from_numpy((y * width + x).astype(np.int64))

    def _clip_loss(self, source, target, source_points, target_points, source_size, target_size) -> torch.Tensor:
        source_cells = F.normalize(source.flatten(1), dim=0)  # C×(H·W)
        target_cells = F.normalize(target.flatten(1), dim=0)
        source_index, target_index = self._cells(source_points, source_size), self._cells(target_points, target_size)
        forward = LOGIT_SCALE * source_cells[:, source_index].T @ target_cells  # K×(H·W)
        backward = LOGIT_SCALE * target_cells[:, target_index].T @ source_cells
        return (F.cross_entropy(forward, target_index) + F.cross_entropy(backward, source_index)) / 2


class _TrainedScorer(Scorer):
    """Holds the training images' maps, trains the head once they are in, then streams the
    scored images through the head into a plain correspondence scorer."""

    def __init__(self, task: TrainedCorrespondenceTask) -> None:
        self.task = task
        self.offset = len(task.train.images)
        self.training: dict[int, torch.Tensor] = {}
        self.head: torch.nn.Conv2d | None = None
        self.inner = _CorrespondenceScorer(task)

    def add(self, index: int, features: torch.Tensor) -> None:
        if index < self.offset:
            self.training[index] = features  # as given (float16 from extraction): upsampled per step
            if len(self.training) == self.offset:
                self.head = self.task.fit_head(self.training)
                self.training = {}
            return
        assert self.head is not None, "the training images come first (image_order)"
        with torch.no_grad():
            self.inner.add(index - self.offset, self.head(self.task._upsample(features)[None])[0])

    def result(self) -> TaskResult:
        return self.inner.result()
