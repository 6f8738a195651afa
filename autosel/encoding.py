"""A search space's model, loaded once, and a task's images encoded once: what the screen, the
cache fill and the workers share (one forward per image batch and timestep reuses them)."""

from __future__ import annotations

from typing import Any

import torch

from autosel.denoiser import DTYPES, Denoiser, DenoiserRun, resolve_dtype
from autosel.evaluation import image_tensor
from autosel.images import batches
from autosel.log import event
from autosel.progress import progress_bar
from autosel.space import SearchSpace
from autosel.tasks import Task


def model_run(
    space: SearchSpace, pipeline: Any | None = None, device: str | None = None, batch_size: int = 16
) -> DenoiserRun:
    """The space's model as a :class:`DenoiserRun` at the space's image size and dtype (default
    extraction settings but the space's prompt: seed 0, one noise draw), loaded unless ``pipeline`` is given."""
    dtype = DTYPES[resolve_dtype(space.dtype, device)]
    if pipeline is None:
        denoiser = Denoiser.load(space.model, dtype=dtype, device=device)
    else:
        denoiser = Denoiser(pipeline, device=device, dtype=dtype, name=space.model)
    return DenoiserRun(denoiser, space.extraction_section(), batch_size=batch_size)


Encoded = list[tuple[list[int], torch.Tensor, torch.Tensor]]
"""A task's images in its order, batched: (image indices, clean latents, seeded noise) per batch."""


def encode_images(task: Task, extractor: DenoiserRun, progress: bool = True) -> Encoded:
    """Encode and noise every image the task needs once, batch by batch (kept for all timesteps)."""
    order = task.image_order()
    event(f"encoding {len(order)} images", images=len(order))
    encoded = []
    with progress_bar("encoding", len(order), progress) as advance:
        for batch in batches(order, extractor.batch_size):
            encoded.append((batch, *extractor.latents_and_noise([image_tensor(task.images[i]) for i in batch])))
            advance(len(batch))
    return encoded
