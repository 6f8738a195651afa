"""Scoring feature configs on a proxy task: extract the task's images, then let it score them.

The task never runs the model; this is the one place that joins the two. One config alone:
combined maps are kept on the CPU in float16 (a few MB per image at proxy sizes) until the
task has scored them. Several configs (:func:`evaluate_configs`, the search's confirmation):
one denoiser forward per image batch and timestep captures the union of their activations,
and each config's combined maps stream into its own task scorer, as the screening sweep does,
so memory stays bounded by one batch of captures and what the scorers still hold.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import torch

from autosel.config import FeatureConfig
from autosel.data.records import ImageSource, read_image
from autosel.denoiser import Denoiser
from autosel.extract import FeatureExtractor, reduce_pca
from autosel.images import batches
from autosel.progress import progress_bar
from autosel.prompts import is_template
from autosel.schema import Level, level_key
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


def evaluate_configs(
    denoiser: Denoiser, configs: Sequence[FeatureConfig], task: Task, batch_size: int = 8, progress: bool = True
) -> list[TaskResult]:
    """Each config's result on ``task``, the same as :func:`evaluate_config` gives config by config
    (bitwise on a CPU), with the denoiser forwards shared: configs with the same extraction
    settings are extracted together, one forward per image batch and distinct timestep.

    Raises:
        UnknownActivationError: an id of a config is not in the model's catalogue.
    """
    results: dict[int, TaskResult] = {}
    groups: dict[str, list[int]] = {}
    for number, config in enumerate(configs):
        groups.setdefault(json.dumps(config.extraction.model_dump(mode="json"), sort_keys=True), []).append(number)
    for members in groups.values():
        chosen = [configs[number] for number in members]
        results.update(zip(members, _evaluate_together(denoiser, chosen, task, batch_size, progress)))
    return [results[number] for number in range(len(configs))]


def _evaluate_together(
    denoiser: Denoiser, configs: Sequence[FeatureConfig], task: Task, batch_size: int, progress: bool
) -> list[TaskResult]:
    """Results of ``configs`` (one extraction section) with one capture of their union per batch and level."""
    extractors = [FeatureExtractor(config, denoiser=denoiser, batch_size=batch_size) for config in configs]
    run = extractors[0]
    requests: dict[Level, list[str]] = {}
    for extractor in extractors:
        run.catalogue.update(extractor.catalogue)  # a channel discard's norm input and modulation
        for level, names in extractor.requests().items():
            requests.setdefault(level, [])
            requests[level] += [name for name in names if name not in requests[level]]
    for level, names in requests.items():
        run.check_request(level, names)
    levels = sorted(requests, key=level_key)
    categories = task.image_categories()
    streamed = categories is None or not is_template(run.extraction.prompt)
    # a {category} prompt: batches grouped by prompt as extract_combined groups them, scored at the end
    order = task.image_order() if streamed else sorted(range(len(task.images)), key=lambda i: categories[i] or "")
    scorers = {n: task.scorer() for n, config in enumerate(configs) if streamed and not config.aggregation.pca_dim}
    held: dict[int, dict[int, torch.Tensor]] = {n: {} for n in range(len(configs)) if n not in scorers}
    with progress_bar("confirming", len(order), progress) as advance:
        for batch in batches(order, run.batch_size):
            latents, noise = run.latents_and_noise([image_tensor(task.images[index]) for index in batch])
            named = task.categories_of(batch)
            captured = {level: run.capture_at(latents, noise, level, requests[level], named) for level in levels}
            for n, extractor in enumerate(extractors):
                combined = extractor.combine(extractor.assemble(captured)).cpu()
                for index, value in zip(batch, combined):
                    if n in scorers:
                        scorers[n].add(index, value.to(torch.float16))
                    else:
                        held[n][index] = value.to(torch.float16)
            advance(len(batch))
    results = {n: scorer.result() for n, scorer in scorers.items()}
    for n, maps in held.items():  # PCA is fitted on all images together, as extract_combined does
        indices = sorted(maps)
        pca_dim = configs[n].aggregation.pca_dim
        stacked = torch.stack([maps[i].float() for i in indices])
        values = reduce_pca(stacked, pca_dim).to(torch.float16) if pca_dim else stacked.to(torch.float16)
        results[n] = task.evaluate(dict(zip(indices, values)))
    return [results[n] for n in range(len(configs))]
