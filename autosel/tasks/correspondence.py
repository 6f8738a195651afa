"""Training-free semantic correspondence: nearest neighbours in feature space, scored by PCK.

As in DIFT, SD+DINO and the seed codebase's ``nn`` mode: both feature maps are bilinearly
upsampled to a working resolution and L2-normalised over channels; each source point takes
the target location of highest cosine similarity (optionally refined by a soft-argmax in a
small window around it).

PCK@α counts a predicted point as correct when its distance to the truth is at most α·L,
measured in the target image's own pixels, with L the longer side of the target's bounding
box (``bbox``) or of the target image (``img``). It is averaged over all visible keypoints
(``point``) or per pair first, then over pairs (``image``). Metric names spell all three:
``pck@0.1/bbox/point`` is the search's primary metric.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from autosel.data.records import CorrespondenceData, ImageSource, KeypointPair
from autosel.data.specs import load_correspondence
from autosel.errors import InvalidInputError
from autosel.numerics import l2_normalize
from autosel.tasks.base import Scorer, Task, TaskResult, register_task
from autosel.tasks.matching import linear_resampling, point_queries, similarity_maps

ALPHAS = (0.05, 0.1, 0.15)
NORMALISATIONS = {"bbox": "the longer side of the target bounding box", "img": "the longer side of the target image"}
AVERAGINGS = {"point": "over all visible keypoints", "image": "per pair, then over pairs"}


def metric_name(alpha: float, normalisation: str = "bbox", averaging: str = "point") -> str:
    """The name of a PCK metric, e.g. ``pck@0.1/bbox/point``."""
    return f"pck@{alpha:g}/{normalisation}/{averaging}"


def match_points(
    source_features: torch.Tensor,
    target_features: torch.Tensor,
    source_points: torch.Tensor,
    source_size: tuple[int, int],
    target_size: tuple[int, int],
    working_size: tuple[int, int] | None = None,
    soft_window: int = 0,
    temperature: float = 0.05,
) -> torch.Tensor:
    """Predict where ``source_points`` land in the target image.

    Args:
        source_features, target_features: C×h×w feature maps (any resolution, same C).
        source_points: K×2 (x, y) pixel coordinates in the source image.
        source_size, target_size: (height, width) of the two images in pixels.
        working_size: (height, width) the maps are upsampled to; default: the target image size.
        soft_window: 0 for the plain argmax; r > 0 refines it by a soft-argmax over the
            (2r+1)² working cells around it.
        temperature: softmax temperature of the soft-argmax (cosine similarities).

    Returns:
        K×2 (x, y) pixel coordinates in the target image.
    """
    size = working_size or target_size
    count = len(source_points)
    maps = torch.stack([source_features.float(), target_features.float()])
    queries = point_queries(maps, torch.zeros(count, dtype=torch.long), source_points, torch.tensor([source_size] * count), size)
    similarity = similarity_maps(queries, torch.ones(count, dtype=torch.long), maps, size)
    return best_points(similarity, torch.tensor([target_size] * count), soft_window, temperature)


def prepare_features(features: torch.Tensor, working_size: tuple[int, int]) -> torch.Tensor:
    """Feature maps (C×h×w or B×C×h×w) upsampled to ``working_size`` and L2-normalised over
    channels: the definition that :mod:`autosel.tasks.matching` computes without building it."""
    batch = features.float() if features.ndim == 4 else features.float()[None]
    if tuple(batch.shape[-2:]) != tuple(working_size):
        rows, cols = linear_resampling(batch.shape[-2], working_size[0]), linear_resampling(batch.shape[-1], working_size[1])
        batch = rows @ batch @ cols.T  # = bilinear upsampling (align_corners=False), as two small matmuls
    batch = l2_normalize(batch, dim=1)
    return batch if features.ndim == 4 else batch[0]


def match_prepared(
    source: torch.Tensor,
    target: torch.Tensor,
    source_points: torch.Tensor,
    source_size: tuple[int, int],
    target_size: tuple[int, int],
    soft_window: int = 0,
    temperature: float = 0.05,
) -> torch.Tensor:
    """:func:`match_points` on maps already passed through :func:`prepare_features`."""
    # pixel centres → grid_sample's [-1, 1] coordinates (align_corners=False), any working size
    grid_xy = 2 * (source_points.float() + 0.5) / torch.tensor([source_size[1], source_size[0]]) - 1
    sampled = F.grid_sample(source[None], grid_xy.view(1, 1, -1, 2), mode="bilinear", align_corners=False)
    queries = l2_normalize(sampled[0, :, 0].T, dim=1)  # K×C
    similarity = torch.einsum("kc,chw->khw", queries, target)
    return best_points(similarity, torch.tensor([target_size] * len(queries)), soft_window, temperature)


TIE_TOLERANCE = 1e-5
"""Cosine similarities within this of a map's maximum count as tied with it (float32 rounding
differs between CPU kernels and between the batched and dense matchers by ~1e-6)."""


def most_similar_cells(similarity: torch.Tensor, tolerance: float = TIE_TOLERANCE) -> torch.Tensor:
    """K flat indices of the most similar cell of each K×H×W ``similarity`` map: the lowest
    (row-major) index among the cells within ``tolerance`` of the map's maximum.

    A plain argmax picks whichever of two (near-)equal cells the kernel's rounding favours, so
    a tie could decide a point differently on another CPU; this rule does not depend on
    rounding except where a cell lies within rounding error of ``maximum - tolerance``.
    """
    flat = similarity.reshape(len(similarity), -1)
    near_best = flat >= flat.max(dim=1, keepdim=True).values - tolerance
    return near_best.to(torch.uint8).argmax(dim=1)  # argmax returns the first of equal values


def best_points(
    similarity: torch.Tensor, target_sizes: torch.Tensor, soft_window: int = 0, temperature: float = 0.05
) -> torch.Tensor:
    """K×2 (x, y) target pixels of the most similar working cell of each K×H×W ``similarity``
    map (``target_sizes``: K×2 (height, width) of each point's target image in pixels).

    ``soft_window`` r > 0 refines the argmax by a soft-argmax over the (2r+1)² cells around it.
    Ties are broken deterministically (:func:`most_similar_cells`).
    """
    work_h, work_w = similarity.shape[-2:]
    best = most_similar_cells(similarity)
    rows, cols = (best // work_w).float(), (best % work_w).float()
    if soft_window > 0:
        rows, cols = _soft_argmax(similarity, best, soft_window, temperature)
    sizes = target_sizes.float()
    return torch.stack([(cols + 0.5) * sizes[:, 1] / work_w - 0.5, (rows + 0.5) * sizes[:, 0] / work_h - 0.5], dim=1)


def _soft_argmax(
    similarity: torch.Tensor, best: torch.Tensor, radius: int, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax-weighted mean (row, col) over the window around each argmax (cells outside the
    map are left out)."""
    _, height, width = similarity.shape
    offsets = torch.arange(-radius, radius + 1)
    rows = (best // width)[:, None, None] + offsets[None, :, None]
    cols = (best % width)[:, None, None] + offsets[None, None, :]
    rows, cols = torch.broadcast_tensors(rows, cols)
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    flat = rows.clamp(0, height - 1) * width + cols.clamp(0, width - 1)
    values = similarity.reshape(len(best), -1).gather(1, flat.reshape(len(best), -1)).view_as(flat.float())
    weights = torch.softmax(values.masked_fill(~inside, float("-inf")).reshape(len(best), -1) / temperature, dim=1)
    return (weights * rows.reshape(len(best), -1)).sum(1), (weights * cols.reshape(len(best), -1)).sum(1)


def pck_hits(errors: np.ndarray, reference_lengths: np.ndarray | float, alpha: float) -> np.ndarray:
    """The PCK rule, for every point at once: a point is correct when its error is at most
    ``alpha × reference_length`` (e.g. its target bbox's longer side, in the same pixels)."""
    return np.asarray(errors, dtype=np.float64) <= alpha * np.asarray(reference_lengths, dtype=np.float64)


def pck(
    predicted: torch.Tensor, truth: torch.Tensor, visible: torch.Tensor, reference_length: float, alpha: float = 0.1
) -> tuple[int, int]:
    """Correct and scored counts of PCK@alpha over the visible points of one pair (the task's
    rule, :func:`pck_hits`)."""
    errors = (predicted.float() - truth.float()).norm(dim=1).numpy()
    hits = pck_hits(errors, reference_length, alpha) & visible.numpy()
    return int(hits.sum()), int(visible.sum())


@register_task("correspondence")
class CorrespondenceTask(Task):
    """Semantic correspondence on keypoint pairs, scored by PCK at every α, normalisation and
    averaging (see the module docstring).

    Args:
        data: the pairs and their images.
        alphas: PCK thresholds.
        working_size: side (or (height, width)) of the grid the maps are upsampled to.
        soft_window: soft-argmax window radius in working cells (0: plain argmax).
        temperature: soft-argmax temperature.
        query: ``bilinear`` (default) or ``nearest`` (the keypoint's rounded cell: see
            :mod:`autosel.protocols`).

    Example:
        >>> task = CorrespondenceTask.from_spec("shapes", role="search", pairs=100)
        >>> result = task.evaluate(features)        # features[i]: C×H×W map of task.images[i]
        >>> result.metrics["pck@0.1/bbox/point"]
    """

    kind = "correspondence"
    primary_metric = metric_name(0.1, "bbox", "point")
    proxy_options = ("pairs", "pairs_per_category", "shapes_size")

    def __init__(
        self,
        data: CorrespondenceData,
        alphas: tuple[float, ...] = ALPHAS,
        working_size: int | tuple[int, int] = 64,
        soft_window: int = 0,
        temperature: float = 0.05,
        query: str = "bilinear",
    ) -> None:
        if not data.pairs:
            raise InvalidInputError(f"dataset {data.name} has no pairs to score")
        if 0.1 not in alphas:
            alphas = tuple(sorted({*alphas, 0.1}))  # the primary metric is always there
        self.data = data
        self.alphas = tuple(alphas)
        self.working_size = (working_size, working_size) if isinstance(working_size, int) else tuple(working_size)
        self.soft_window = soft_window
        self.temperature = temperature
        self.query = query

    @classmethod
    def from_spec(
        cls,
        dataset: str,
        role: str = "search",
        pairs: int | None = None,
        pairs_per_category: int | None = None,
        shapes_size: int = 64,
        seed: int = 0,
        **options: Any,
    ) -> CorrespondenceTask:
        data = load_correspondence(dataset, role, pairs, pairs_per_category, shapes_size, seed)
        return cls(data, **options)

    @property
    def images(self) -> list[ImageSource]:  # type: ignore[override]
        return self.data.images

    def image_categories(self) -> list[str | None]:
        """Each image's category: that of the pairs it is in (SPair's and shapes' pairs join
        images of one category)."""
        return pair_categories(self.data)

    def scorer(self) -> Scorer:
        return _CorrespondenceScorer(self)

    @functools.cached_property
    def pairs_of_image(self) -> dict[int, list[int]]:
        """The numbers of the pairs each image takes part in."""
        pairs_of: dict[int, list[int]] = defaultdict(list)
        for number, pair in enumerate(self.data.pairs):
            pairs_of[pair.source].append(number)
            if pair.target != pair.source:
                pairs_of[pair.target].append(number)
        return dict(pairs_of)

    def predict(self, pairs: list[KeypointPair], maps: dict[int, torch.Tensor]) -> list[torch.Tensor]:
        """Predicted K×2 target pixels of every keypoint of each pair, pairs batched together.

        Args:
            pairs: the pairs to match.
            maps: C×h×w feature map by image index, for every image of ``pairs`` (a pair's two
                maps share C; pairs whose maps have the same shapes are batched together).
        """
        groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
        for number, pair in enumerate(pairs):
            groups[tuple(maps[pair.source].shape) + tuple(maps[pair.target].shape)].append(number)
        predicted: list[torch.Tensor] = [torch.empty(0)] * len(pairs)
        for numbers in groups.values():
            for number, points in zip(numbers, self._predict_alike([pairs[n] for n in numbers], maps)):
                predicted[number] = points
        return predicted

    def _predict_alike(self, pairs: list[KeypointPair], maps: dict[int, torch.Tensor]) -> list[torch.Tensor]:
        counts = [len(pair.source_points) for pair in pairs]
        points = torch.from_numpy(np.concatenate([np.asarray(p.source_points, dtype=np.float32).reshape(-1, 2) for p in pairs]))

        def per_point(values: list[Any]) -> torch.Tensor:
            return torch.repeat_interleave(torch.tensor(values), torch.tensor(counts), dim=0)

        sources = {index: n for n, index in enumerate(sorted({pair.source for pair in pairs}))}
        targets = {index: n for n, index in enumerate(sorted({pair.target for pair in pairs}))}
        queries = point_queries(
            torch.stack([maps[index] for index in sources]).float(), per_point([sources[p.source] for p in pairs]),
            points, per_point([p.source_size for p in pairs]), self.working_size, self.query,
        )
        similarity = similarity_maps(
            queries, per_point([targets[p.target] for p in pairs]),
            torch.stack([maps[index] for index in targets]).float(), self.working_size,
        )
        predicted = best_points(similarity, per_point([p.target_size for p in pairs]), self.soft_window, self.temperature)
        return list(predicted.split(counts))

    def result(self, errors: list[np.ndarray]) -> TaskResult:
        """The result from every pair's visible-keypoint errors (in target pixels)."""
        boxes = np.array([pair.target_bbox for pair in self.data.pairs], dtype=np.float64).reshape(-1, 4)
        lengths = {
            "bbox": np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]),
            "img": np.array([max(pair.target_size) for pair in self.data.pairs], dtype=np.float64),
        }
        counts = np.array([len(e) for e in errors], dtype=np.int64)
        pair_of_point = np.repeat(np.arange(len(errors)), counts)
        flat = np.concatenate(errors).astype(np.float64) if errors else np.zeros(0)
        correct = {}  # per metric: is each point correct, and how many are per pair
        for alpha in self.alphas:
            for normalisation in NORMALISATIONS:
                hits = pck_hits(flat, lengths[normalisation][pair_of_point], alpha)
                correct[alpha, normalisation] = (hits, np.bincount(pair_of_point, weights=hits, minlength=len(errors)))
        categories = np.array([pair.category for pair in self.data.pairs])
        metrics = self._metrics(correct, counts, np.ones(len(errors), dtype=bool), pair_of_point)
        per_category = {
            category: self._metrics(correct, counts, categories == category, pair_of_point)
            for category in sorted(set(categories.tolist()))
        }
        descriptions = {
            metric_name(a, n, v): f"PCK@{a:g}: error ≤ {a:g} × {NORMALISATIONS[n]}, averaged {AVERAGINGS[v]}"
            for a in self.alphas for n in NORMALISATIONS for v in AVERAGINGS
        }
        return TaskResult(
            task=self.name, metrics=metrics, primary=self.primary_metric, n_items=int(counts.sum()),
            unit="keypoints", per_category=per_category, descriptions=descriptions,
        )

    @staticmethod
    def _metrics(
        correct: dict[tuple[float, str], tuple[np.ndarray, np.ndarray]], counts: np.ndarray, chosen: np.ndarray,
        pair_of_point: np.ndarray,
    ) -> dict[str, float]:
        """Every metric over the ``chosen`` pairs (a boolean mask)."""
        points = chosen[pair_of_point]
        scored = chosen & (counts > 0)
        metrics = {}
        for (alpha, normalisation), (hits, per_pair) in correct.items():
            point_average = float(hits[points].mean()) if points.any() else float("nan")
            image_average = float((per_pair[scored] / counts[scored]).mean()) if scored.any() else float("nan")
            metrics[metric_name(alpha, normalisation, "point")] = point_average
            metrics[metric_name(alpha, normalisation, "image")] = image_average
        return metrics


def pair_categories(data: CorrespondenceData) -> list[str | None]:
    """The category of each of ``data.images`` from the pairs it is in (``None`` if in none)."""
    categories: list[str | None] = [None] * len(data.images)
    for pair in data.pairs:
        categories[pair.source] = categories[pair.source] or pair.category
        categories[pair.target] = categories[pair.target] or pair.category
    return categories


class _CorrespondenceScorer(Scorer):
    """Scores pairs in batches once both of their images have arrived; forgets an image once
    all of its pairs are scored.

    A batch closes when the maps held pass ``batch_bytes`` or its pairs' similarity maps would
    pass ``batch_cells`` floats (or at :meth:`result`), so batches depend only on the order and
    size of the maps that arrive — the same order gives bitwise the same scores however the
    caller batched its forwards.
    """

    batch_bytes = 16 * 2**20  # maps held (a sweep runs one scorer per candidate, so keep it small)
    batch_cells = 2**23  # 32 MB of float32 similarities

    def __init__(self, task: CorrespondenceTask) -> None:
        self.task = task
        self.errors: list[np.ndarray | None] = [None] * len(task.data.pairs)
        self.pairs_of = task.pairs_of_image
        self.remaining = {index: len(numbers) for index, numbers in self.pairs_of.items()}
        self.raw: dict[int, torch.Tensor] = {}
        self.held_bytes = 0
        self.ready: list[int] = []
        self.ready_points = 0
        self.cells_per_point = task.working_size[0] * task.working_size[1]

    def add(self, index: int, features: torch.Tensor) -> None:
        self.raw[index] = features
        self.held_bytes += features.nbytes
        for number in self.pairs_of.get(index, []):
            pair = self.task.data.pairs[number]
            both_in = pair.source in self.raw and pair.target in self.raw
            if both_in and self.errors[number] is None and number not in self.ready:
                self.ready.append(number)
                self.ready_points += len(pair.source_points)
        if self.ready and (self.held_bytes >= self.batch_bytes or self.ready_points * self.cells_per_point >= self.batch_cells):
            self._score_ready()

    def _score_ready(self) -> None:
        pairs = [self.task.data.pairs[number] for number in self.ready]
        predicted = torch.cat(self.task.predict(pairs, self.raw))
        truth = torch.from_numpy(np.concatenate([np.asarray(p.target_points, dtype=np.float32).reshape(-1, 2) for p in pairs]))
        errors = (predicted - truth).norm(dim=1).numpy()
        start = 0
        for number, pair in zip(self.ready, pairs):
            count = len(pair.source_points)
            self.errors[number] = errors[start : start + count][np.asarray(pair.visible, dtype=bool)]
            start += count
            for index in {pair.source, pair.target}:
                self.remaining[index] -= 1
                if self.remaining[index] == 0:
                    self.held_bytes -= self.raw.pop(index).nbytes
        self.ready, self.ready_points = [], 0

    def result(self) -> TaskResult:
        if self.ready:
            self._score_ready()
        missing = [self.task.data.pairs[i].name or str(i) for i, e in enumerate(self.errors) if e is None]
        if missing:
            raise InvalidInputError(f"{len(missing)} pairs were not scored (features missing), e.g. {missing[0]}")
        return self.task.result(self.errors)  # type: ignore[arg-type]
