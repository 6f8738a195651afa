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
from autosel.tasks.base import Scorer, Task, TaskResult, register_task

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
    return match_prepared(
        prepare_features(source_features, size), prepare_features(target_features, size),
        source_points, source_size, target_size, soft_window, temperature,
    )


def prepare_features(features: torch.Tensor, working_size: tuple[int, int]) -> torch.Tensor:
    """Feature maps (C×h×w or B×C×h×w) upsampled to ``working_size`` and L2-normalised over
    channels: do it once per image when an image takes part in several pairs."""
    batch = features.float() if features.ndim == 4 else features.float()[None]
    if tuple(batch.shape[-2:]) != tuple(working_size):
        rows, cols = _upsampling(batch.shape[-2], working_size[0]), _upsampling(batch.shape[-1], working_size[1])
        batch = rows @ batch @ cols.T  # = bilinear upsampling (align_corners=False), as two small matmuls
    batch = F.normalize(batch, dim=1)
    return batch if features.ndim == 4 else batch[0]


def source_queries(
    features: torch.Tensor, points: torch.Tensor, source_size: tuple[int, int], working_size: tuple[int, int]
) -> torch.Tensor:
    """K×C unit query vectors: the prepared source map (:func:`prepare_features`) sampled
    bilinearly at ``points`` — computed from the few working cells around each point only."""
    features = features.float()
    height, width = working_size
    x = (points[:, 0].float() + 0.5) * width / source_size[1] - 0.5
    y = (points[:, 1].float() + 0.5) * height / source_size[0] - 0.5
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    cell_x = torch.stack([x0, x0 + 1, x0, x0 + 1], 1).long()
    cell_y = torch.stack([y0, y0, y0 + 1, y0 + 1], 1).long()
    weights = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], 1)
    inside = (cell_x >= 0) & (cell_x < width) & (cell_y >= 0) & (cell_y < height)
    weights = weights * inside  # cells outside the map count as zeros, as in grid_sample
    rows = _upsampling(features.shape[-2], height)[cell_y.clamp(0, height - 1)]  # K×4×h
    cols = _upsampling(features.shape[-1], width)[cell_x.clamp(0, width - 1)]  # K×4×w
    cells = F.normalize(torch.einsum("kni,cij,knj->knc", rows, features, cols), dim=2)
    return F.normalize((weights[..., None] * cells).sum(1), dim=1)


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
    queries = F.normalize(sampled[0, :, 0].T, dim=1)  # K×C
    return match_queries(queries, target, target_size, soft_window, temperature)


def match_queries(
    queries: torch.Tensor,
    target: torch.Tensor,
    target_size: tuple[int, int],
    soft_window: int = 0,
    temperature: float = 0.05,
    working_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """K×2 target pixels of the cells most similar to K unit ``queries``.

    ``target`` is a prepared C×h×w map (:func:`prepare_features`), or its (h·w)×C cell matrix
    (:func:`target_cells`) together with ``working_size`` = (h, w).
    """
    if target.ndim == 3:
        work_h, work_w = target.shape[-2:]
        similarity = queries @ target.reshape(target.shape[0], -1)  # K×(h·w)
    else:
        work_h, work_w = working_size  # type: ignore[misc]
        similarity = (target @ queries.T).T
    best = similarity.argmax(dim=1)
    rows, cols = (best // work_w).float(), (best % work_w).float()
    if soft_window > 0:
        rows, cols = _soft_argmax(similarity.view(-1, work_h, work_w), best, soft_window, temperature)
    return torch.stack([(cols + 0.5) * target_size[1] / work_w - 0.5, (rows + 0.5) * target_size[0] / work_h - 0.5], dim=1)


def target_cells(features: torch.Tensor, working_size: tuple[int, int]) -> torch.Tensor:
    """The (h·w)×C unit vectors of :func:`prepare_features`'s map, cells as contiguous rows
    (normalising along contiguous memory is several times faster than across channels)."""
    channels, height, width = features.shape
    cells = features.float().permute(1, 2, 0).contiguous()  # h×w×C
    if (height, width) != tuple(working_size):
        rows, cols = _upsampling(height, working_size[0]), _upsampling(width, working_size[1])
        cells = (rows @ cells.reshape(height, width * channels)).reshape(working_size[0], width, channels)
        cells = torch.matmul(cols, cells)  # working_h × working_w × C
    return F.normalize(cells.reshape(-1, channels), dim=1)


@functools.lru_cache(maxsize=64)
def _upsampling(size_in: int, size_out: int) -> torch.Tensor:
    """The size_out×size_in matrix of 1-D linear upsampling (align_corners=False); bilinear
    upsampling of a map is ``rows @ map @ cols.T``."""
    identity = torch.eye(size_in)[None]  # one batch, size_in channels: the unit impulses
    return F.interpolate(identity, size=size_out, mode="linear", align_corners=False)[0].T.contiguous()


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


def pck(
    predicted: torch.Tensor, truth: torch.Tensor, visible: torch.Tensor, reference_length: float, alpha: float = 0.1
) -> tuple[int, int]:
    """Correct and scored counts of PCK@alpha: a visible point is correct when its error is at
    most ``alpha × reference_length`` (e.g. the target bbox's longer side, in the same pixels)."""
    errors = (predicted.float() - truth.float()).norm(dim=1)
    correct = (errors <= alpha * reference_length) & visible
    return int(correct.sum()), int(visible.sum())


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

    Example:
        >>> task = CorrespondenceTask.from_spec("shapes", role="search", pairs=100)
        >>> result = task.evaluate(features)        # features[i]: C×H×W map of task.images[i]
        >>> result.metrics["pck@0.1/bbox/point"]
    """

    primary_metric = metric_name(0.1, "bbox", "point")

    def __init__(
        self,
        data: CorrespondenceData,
        alphas: tuple[float, ...] = ALPHAS,
        working_size: int | tuple[int, int] = 64,
        soft_window: int = 0,
        temperature: float = 0.05,
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

    @classmethod
    def from_spec(
        cls,
        dataset: str,
        role: str = "search",
        pairs: int | None = None,
        pairs_per_category: int | None = None,
        image_size: int = 64,
        seed: int = 0,
        **options: Any,
    ) -> CorrespondenceTask:
        data = load_correspondence(dataset, role, pairs, pairs_per_category, image_size, seed)
        return cls(data, **options)

    @property
    def images(self) -> list[ImageSource]:  # type: ignore[override]
        return self.data.images

    def scorer(self) -> Scorer:
        return _CorrespondenceScorer(self)

    def predict_pair(self, pair: KeypointPair, source: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """Predicted K×2 target pixels of ``pair`` from the raw source map and the target's
        :func:`target_cells`."""
        points = torch.from_numpy(np.asarray(pair.source_points, dtype=np.float32))
        queries = source_queries(source, points, pair.source_size, self.working_size)
        return match_queries(queries, cells, pair.target_size, self.soft_window, self.temperature, self.working_size)

    def result(self, errors: list[np.ndarray]) -> TaskResult:
        """The result from every pair's visible-keypoint errors (in target pixels)."""
        lengths, categories = [], []
        for pair in self.data.pairs:
            x1, y1, x2, y2 = pair.target_bbox
            lengths.append({"bbox": max(x2 - x1, y2 - y1), "img": float(max(pair.target_size))})
            categories.append(pair.category)
        metrics = self._metrics(errors, lengths)
        per_category = {}
        for category in sorted(set(categories)):
            chosen = [i for i, c in enumerate(categories) if c == category]
            per_category[category] = self._metrics([errors[i] for i in chosen], [lengths[i] for i in chosen])
        descriptions = {
            metric_name(a, n, v): f"PCK@{a:g}: error ≤ {a:g} × {NORMALISATIONS[n]}, averaged {AVERAGINGS[v]}"
            for a in self.alphas for n in NORMALISATIONS for v in AVERAGINGS
        }
        return TaskResult(
            task=self.name, metrics=metrics, primary=self.primary_metric, n_items=int(sum(len(e) for e in errors)),
            unit="keypoints", per_category=per_category, descriptions=descriptions,
        )

    def _metrics(self, errors: list[np.ndarray], lengths: list[dict[str, float]]) -> dict[str, float]:
        scored = [i for i, e in enumerate(errors) if len(e)]
        total = sum(len(errors[i]) for i in scored)
        metrics = {}
        for alpha in self.alphas:
            for normalisation in NORMALISATIONS:
                correct = [int((errors[i] <= alpha * lengths[i][normalisation]).sum()) for i in scored]
                metrics[metric_name(alpha, normalisation, "point")] = sum(correct) / total if total else float("nan")
                per_pair = [c / len(errors[i]) for c, i in zip(correct, scored)]
                metrics[metric_name(alpha, normalisation, "image")] = float(np.mean(per_pair)) if per_pair else float("nan")
        return metrics


class _CorrespondenceScorer(Scorer):
    """Scores each pair as soon as both of its images have arrived; forgets an image once all
    of its pairs are scored."""

    def __init__(self, task: CorrespondenceTask) -> None:
        self.task = task
        self.errors: list[np.ndarray | None] = [None] * len(task.data.pairs)
        self.pairs_of: dict[int, list[int]] = defaultdict(list)
        for number, pair in enumerate(task.data.pairs):
            self.pairs_of[pair.source].append(number)
            if pair.target != pair.source:
                self.pairs_of[pair.target].append(number)
        self.remaining = {index: len(numbers) for index, numbers in self.pairs_of.items()}
        self.raw: dict[int, torch.Tensor] = {}
        self.prepared: dict[int, torch.Tensor] = {}

    def add(self, index: int, features: torch.Tensor) -> None:
        self.raw[index] = features
        for number in self.pairs_of.get(index, []):
            pair = self.task.data.pairs[number]
            if pair.source in self.raw and pair.target in self.raw and self.errors[number] is None:
                self._score(number, pair)

    def _score(self, number: int, pair: KeypointPair) -> None:
        if pair.target not in self.prepared:
            self.prepared[pair.target] = target_cells(self.raw[pair.target], self.task.working_size)
        predicted = self.task.predict_pair(pair, self.raw[pair.source], self.prepared[pair.target])
        truth = torch.from_numpy(np.asarray(pair.target_points, dtype=np.float32))
        visible = torch.from_numpy(np.asarray(pair.visible, dtype=bool))
        self.errors[number] = (predicted - truth).norm(dim=1)[visible].numpy()
        for index in {pair.source, pair.target}:
            self.remaining[index] -= 1
            if self.remaining[index] == 0:
                self.raw.pop(index, None)
                self.prepared.pop(index, None)

    def result(self) -> TaskResult:
        missing = [self.task.data.pairs[i].name or str(i) for i, e in enumerate(self.errors) if e is None]
        if missing:
            raise InvalidInputError(f"{len(missing)} pairs were not scored (features missing), e.g. {missing[0]}")
        return self.task.result(self.errors)  # type: ignore[arg-type]
