"""Scoring a feature config on a proxy task: extract the task's images, then let it score them.

The task never runs the model; this is the one place that joins the two. Combined maps are
kept on the CPU in float16 (a few MB per image at proxy sizes) until the task has scored them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from autosel.data.records import ImageSource, read_image
from autosel.extract import FeatureExtractor, reduce_pca
from autosel.images import batches
from autosel.progress import progress_bar
from autosel.prompts import is_template
from autosel.tasks.base import Task, TaskResult


def image_tensor(source: ImageSource) -> torch.Tensor:
    """A dataset image as a float32 3×H×W tensor in [0, 1]."""
    array = np.ascontiguousarray(read_image(source))
    return torch.from_numpy(array).permute(2, 0, 1).float() / 255.0


def extract_combined(
    extractor: FeatureExtractor,
    images: Sequence[ImageSource],
    progress: bool = True,
    categories: Sequence[str | None] | None = None,
) -> list[torch.Tensor]:
    """The config's combined (and, if configured, PCA-reduced) C×H×W map of every image;
    ``categories`` (one per image) fill a ``{category}`` prompt."""
    by_index: dict[int, torch.Tensor] = {}
    order = list(range(len(images)))
    if categories is not None and is_template(extractor.config.extraction.prompt):
        order.sort(key=lambda i: categories[i] or "")  # one prompt per batch where it can: one forward each
    with progress_bar("extracting", len(images), progress) as advance:
        for batch in batches(order, extractor.batch_size):
            chunk = [image_tensor(images[i]) for i in batch]
            named = None if categories is None else [categories[i] for i in batch]
            combined = extractor.combine(extractor(chunk, named)).cpu()
            by_index.update((index, value.to(torch.float16)) for index, value in zip(batch, combined))
            advance(len(chunk))
    maps = [by_index[index] for index in range(len(images))]
    pca_dim = extractor.config.aggregation.pca_dim
    if pca_dim:  # fitted on all images together, as `autosel extract --aggregate` does
        reduced = reduce_pca(torch.stack([m.float() for m in maps]), pca_dim)
        maps = [value.to(torch.float16) for value in reduced]
    return maps


def evaluate_config(extractor: FeatureExtractor, task: Task, progress: bool = True) -> TaskResult:
    """Extract ``task.images`` with ``extractor`` and score them with ``task``."""
    return task.evaluate(extract_combined(extractor, task.images, progress, task.image_categories()))
