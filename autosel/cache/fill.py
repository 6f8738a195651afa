"""Filling the activation cache: one denoiser forward per (image batch, timestep) for all the
(id, timestep) entries that are missing, written entry by entry through the cache's writers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from autosel import variants
from autosel.cache.activations import ActivationCache, CacheKey, project, proxy_map
from autosel.denoiser import DTYPES, DenoiserRun
from autosel.encoding import Encoded, encode_images
from autosel.images import images_digest
from autosel.progress import progress_bar
from autosel.space import canonical_model
from autosel.tasks import Task


def cache_keys(
    extractor: DenoiserRun,
    task: Task,
    dataset: str,
    role: str,
    entries: Sequence[tuple[str, int]],
    resolution: int,
    projection: int | None,
    seed: int,
) -> dict[tuple[str, int], CacheKey]:
    """The cache key of each (id, timestep) for this model, task images and proxy settings."""
    denoiser = extractor.denoiser
    images = images_digest(task.images)
    extraction = json.dumps(extractor.extraction.identity(), sort_keys=True)
    dtype = next(name for name, value in DTYPES.items() if value == denoiser.dtype)
    size = tuple(extractor.image_size)
    return {
        (name, timestep): CacheKey(
            model=canonical_model(denoiser.name), revision=denoiser.revision, activation=name, timestep=timestep,
            dataset=dataset, role=role, images=images, image_size=size, resolution=resolution,
            projection=projection, seed=seed, extraction=extraction + f":{dtype}",
        )
        for name, timestep in entries
    }


def fill_cache(
    cache: ActivationCache,
    extractor: DenoiserRun,
    task: Task,
    keys: dict[tuple[str, int], CacheKey],
    progress: bool = True,
    encoded: Encoded | None = None,
) -> tuple[dict[tuple[str, int], np.ndarray], int]:
    """Every key's N×C×H×W float16 array (N = ``len(task.images)``), computing the missing ones
    (from ``encoded`` latents when given, see :func:`autosel.encoding.encode_images`).

    Returns:
        The arrays by (id, timestep), and the number of denoiser forwards run.
    """
    found = {pair: cache.get(key) for pair, key in keys.items()}
    missing: dict[int, list[str]] = {}
    for (name, timestep), array in found.items():
        if array is None:
            missing.setdefault(timestep, []).append(name)
    before = extractor.forward_count
    if missing:
        found.update(_compute(cache, extractor, task, keys, missing, progress, encoded))
    return found, extractor.forward_count - before  # type: ignore[return-value]


def _compute(
    cache: ActivationCache,
    extractor: DenoiserRun,
    task: Task,
    keys: dict[tuple[str, int], CacheKey],
    missing: dict[int, list[str]],
    progress: bool,
    encoded: Encoded | None,
) -> dict[tuple[str, int], Any]:
    encoded = encoded if encoded is not None else encode_images(task, extractor, progress)
    writers: dict[tuple[str, int], Any] = {}
    try:
        catalogue = variants.with_variants(extractor.catalogue, [name for names in missing.values() for name in names])
        for timestep, names in missing.items():
            for name in names:
                point = catalogue[name]
                key = keys[(name, timestep)]
                channels = point.channels if key.projection is None else min(point.channels, key.projection)
                shape = (len(task.images), channels, min(point.height, key.resolution), min(point.width, key.resolution))
                writers[(name, timestep)] = cache.create(key, shape)
        with progress_bar("caching", len(encoded) * len(missing), progress) as advance:
            for batch, latents, noise in encoded:
                for timestep, names in missing.items():
                    captured = extractor.capture_at(
                        latents, noise, timestep, variants.base_ids(names), task.categories_of(batch)
                    )
                    for name in names:
                        key = keys[(name, timestep)]
                        value = variants.apply(captured[variants.split_variant(name)[0]], name)
                        value = project(proxy_map(value, key.resolution), key.projection, key.seed, name)
                        writers[(name, timestep)].array[batch] = value.cpu().numpy().astype(np.float16)
                    advance(1)
        return {pair: writer.commit() for pair, writer in writers.items()}
    except BaseException:
        for writer in writers.values():  # a failure (full disk, interrupt) leaves no partial file
            writer.discard()
        raise

