"""Filling the activation cache: one denoiser forward per (image batch, timestep) for all the
(id, timestep) entries that are missing, written entry by entry through the cache's writers."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from autosel import variants
from autosel.cache.activations import ActivationCache, CacheKey, project, proxy_map
from autosel.catalog import ActivationPoint
from autosel.denoiser import DTYPES, DenoiserRun
from autosel.encoding import Encoded, encode_images
from autosel.images import images_digest
from autosel.progress import progress_bar
from autosel.space import SearchSpace, canonical_model
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
    dtype = next(name for name, value in DTYPES.items() if value == denoiser.dtype)
    return _keys(denoiser.name, denoiser.revision, dtype, extractor.extraction.identity(), tuple(extractor.image_size),
                 task, dataset, role, entries, resolution, projection, seed)


def search_cache_keys(
    space: SearchSpace, task: Task, image_size: tuple[int, int], entries: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], CacheKey]:
    """The cache keys of a search of ``space`` (its dtype resolved) for ``task``'s images at
    ``image_size``: :func:`cache_keys` of the model run its workers load
    (:func:`autosel.encoding.model_run`) with the search's proxy resolution, projection and seed,
    without loading it (a plan counts what is cached)."""
    search = space.search
    model = space.model_section()
    return _keys(model.name, model.revision, model.dtype, space.extraction_section().identity(), tuple(image_size),
                 task, space.dataset, "search", entries, search.cache_resolution, search.cache_dim, space.seed)


def _keys(model: str, revision: str | None, dtype: str, extraction: dict[str, Any], image_size: tuple[int, ...], task: Task,
          dataset: str, role: str, entries: Sequence[tuple[str, int]], resolution: int, projection: int | None,
          seed: int) -> dict[tuple[str, int], CacheKey]:
    images = images_digest(task.images)
    settings = json.dumps(extraction, sort_keys=True) + f":{dtype}"
    return {
        (name, timestep): CacheKey(
            model=canonical_model(model), revision=revision, activation=name, timestep=timestep, dataset=dataset,
            role=role, images=images, image_size=image_size, resolution=resolution, projection=projection, seed=seed,
            extraction=settings,
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
                key = keys[(name, timestep)]
                shape = cached_shape(catalogue[name], len(task.images), key.resolution, key.projection)
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
                        writers[(name, timestep)].array[batch] = value.to(torch.float16).cpu().numpy()
                    advance(1)
        return {pair: writer.commit() for pair, writer in writers.items()}
    except BaseException:
        for writer in writers.values():  # a failure (full disk, interrupt) leaves no partial file
            writer.discard()
        raise


def cached_shape(point: ActivationPoint, images: int, resolution: int, projection: int | None) -> tuple[int, int, int, int]:
    """The N×C×H×W shape of ``point``'s cache entry: pooled to ``resolution`` cells a side, projected to ``projection`` channels."""
    channels = point.channels if projection is None else min(point.channels, projection)
    return images, channels, min(point.height, resolution), min(point.width, resolution)


def kept_bytes(points: Iterable[ActivationPoint], timesteps: int, images: int, resolution: int, projection: int | None) -> int:
    """Bytes :class:`ScreenedFeatures` holds for a screen of ``points`` × ``timesteps`` on ``images`` (float16)."""
    return 2 * timesteps * sum(math.prod(cached_shape(p, images, resolution, projection)) for p in points)


class ScreenedFeatures:
    """The cache form of every (id, t) a screen captures, kept in memory while it runs, so the
    cache stage writes the top candidates' entries (:meth:`write`) instead of running the same
    forwards again. The values are those :func:`fill_cache` computes from the same captures."""

    def __init__(self, keys: dict[tuple[str, int], CacheKey], shapes: dict[tuple[str, int], tuple[int, ...]]) -> None:
        self.keys, self.shapes = keys, shapes
        self.arrays: dict[tuple[str, int], np.ndarray] = {}

    def add(self, name: str, timestep: int, batch: Sequence[int], value: torch.Tensor) -> None:
        """Keep ``name``'s captured maps of the images ``batch`` at ``timestep`` (B×C×H×W, variant applied)."""
        key = self.keys[(name, timestep)]
        if (name, timestep) not in self.arrays:
            self.arrays[(name, timestep)] = np.empty(self.shapes[(name, timestep)], dtype=np.float16)
        value = project(proxy_map(value, key.resolution), key.projection, key.seed, name)
        self.arrays[(name, timestep)][list(batch)] = value.to(torch.float16).cpu().numpy()  # as fill_cache converts

    def write(self, cache: ActivationCache, entries: Iterable[tuple[str, int]]) -> int:
        """Commit the kept arrays of ``entries`` the cache does not hold yet; how many were written."""
        written = 0
        for pair in entries:
            if pair in self.arrays and not cache.holds(self.keys[pair]):
                cache.put(self.keys[pair], self.arrays[pair])
                written += 1
        return written
