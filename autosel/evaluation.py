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
from autosel.denoiser import Denoiser, DenoiserRun
from autosel.extract import FeatureExtractor, combine_features, post_process, reduce_pca
from autosel.images import batches
from autosel.progress import progress_bar
from autosel.tasks.base import Task, TaskResult


def image_tensor(source: ImageSource) -> torch.Tensor:
    """A dataset image as a float32 3×H×W tensor in [0, 1]."""
    array = np.ascontiguousarray(read_image(source))
    return torch.from_numpy(array).permute(2, 0, 1).float() / 255.0


def extract_combined(
    extractor: FeatureExtractor, images: Sequence[ImageSource], progress: bool = True
) -> list[torch.Tensor]:
    """The config's combined (and, if configured, PCA-reduced) C×H×W map of every image."""
    maps: list[torch.Tensor] = []
    with progress_bar("extracting", len(images), progress) as advance:
        for batch in batches(images, extractor.batch_size):
            chunk = [image_tensor(source) for source in batch]
            combined = extractor.combine(extractor(chunk)).cpu()
            maps.extend(value.to(torch.float16) for value in combined)
            advance(len(chunk))
    pca_dim = extractor.config.aggregation.pca_dim
    if pca_dim:  # fitted on all images together, as `autosel extract --aggregate` does
        reduced = reduce_pca(torch.stack([m.float() for m in maps]), pca_dim)
        maps = [value.to(torch.float16) for value in reduced]
    return maps


def evaluate_config(extractor: FeatureExtractor, task: Task, progress: bool = True) -> TaskResult:
    """Extract ``task.images`` with ``extractor`` and score them with ``task``."""
    return task.evaluate(extract_combined(extractor, task.images, progress))


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
        run = DenoiserRun(denoiser, configs[members[0]].extraction, batch_size=batch_size)
        chosen = [configs[number] for number in members]
        results.update(zip(members, _evaluate_together(run, chosen, task, progress)))
    return [results[number] for number in range(len(configs))]


def _evaluate_together(run: DenoiserRun, configs: Sequence[FeatureConfig], task: Task, progress: bool) -> list[TaskResult]:
    ids_by_timestep: dict[int, list[str]] = {}
    for config in configs:
        config.check_ids(run.catalogue)
        for activation in config.activations:
            names = ids_by_timestep.setdefault(activation.timestep, [])
            if activation.id not in names:
                names.append(activation.id)
    for timestep, names in ids_by_timestep.items():
        run.check_request(timestep, names)
    scorers = {n: task.scorer() for n, config in enumerate(configs) if not config.aggregation.pca_dim}
    held: dict[int, dict[int, torch.Tensor]] = {n: {} for n, config in enumerate(configs) if config.aggregation.pca_dim}
    order = task.image_order()
    with progress_bar("confirming", len(order), progress) as advance:
        for batch in batches(order, run.batch_size):
            latents, noise = run.latents_and_noise([image_tensor(task.images[index]) for index in batch])
            captured = {t: run.capture_at(latents, noise, t, names) for t, names in sorted(ids_by_timestep.items())}
            for n, config in enumerate(configs):
                features = {a.id: post_process(captured[a.timestep][a.id], a.post) for a in config.activations}
                combined = combine_features(config, features).cpu()
                for index, value in zip(batch, combined):
                    if n in scorers:
                        scorers[n].add(index, value.to(torch.float16))
                    else:
                        held[n][index] = value.to(torch.float16)
            advance(len(batch))
    results = {n: scorer.result() for n, scorer in scorers.items()}
    for n, maps in held.items():  # PCA is fitted on all images together, as extract_combined does
        indices = sorted(maps)
        reduced = reduce_pca(torch.stack([maps[i].float() for i in indices]), configs[n].aggregation.pca_dim)
        results[n] = task.evaluate({i: value.to(torch.float16) for i, value in zip(indices, reduced)})
    return [results[n] for n in range(len(configs))]
