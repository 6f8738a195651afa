"""``autosel inspect``: run real images through a model and look for massive activations.

For each requested id and timestep the images' activations are reduced batch by batch to
per-channel statistics (:class:`autosel.massive.ChannelStats`), so memory stays bounded by one
batch of captures; each row then reports the massive channels (mean |value| over the image
tokens more than ``factor`` × the median channel's), their share of the feature's energy
(sum of squares) and the NaN/Inf counts.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from autosel.config import ExtractionSection
from autosel.data.specs import DatasetSpec
from autosel.denoiser import Denoiser, DenoiserRun
from autosel.errors import UnknownActivationError, close_matches
from autosel.evaluation import image_tensor
from autosel.images import batches
from autosel.massive import DEFAULT_FACTOR, ChannelReport, ChannelStats
from autosel.progress import progress_bar
from autosel.tasks import make_task


@dataclass(frozen=True)
class InspectionRow(ChannelReport):
    """One activation at one timestep: what :func:`inspect_model` found (a
    :class:`~autosel.massive.ChannelReport` of its map, ratios rounded to 0.1)."""

    id: str
    timestep: int
    channels: int
    sigma: float = 0.0
    """σ of the timestep for this model at the inspected size (see :mod:`autosel.noise`)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data, the activation first."""
        data = asdict(self)
        return {key: data.pop(key) for key in ("id", "timestep", "sigma", "channels")} | data


def inspect_model(
    model: str,
    dataset: str = "shapes",
    timesteps: Sequence[int] = (50, 260),
    ids: Sequence[str] | None = None,
    factor: float = DEFAULT_FACTOR,
    images: int = 8,
    image_size: int | tuple[int, int] | None = None,
    dtype: str = "float32",
    device: str | None = None,
    batch_size: int = 8,
    progress: bool = True,
    denoiser: Denoiser | None = None,
) -> list[InspectionRow]:
    """Massive-activation statistics of ``model`` on ``images`` images of ``dataset``.

    Args:
        model: registry name, hub id or local pipeline folder.
        dataset: ``shapes``, ``spair:PATH[:split]`` or ``folder:PATH`` (its search images).
        timesteps: timesteps on the 0–999 scale.
        ids: ids or globs; default every id that is not an attention map.
        factor: a channel is massive above ``factor`` × the median channel's mean |value|.
        images: how many images to run.
        denoiser: an already loaded model (``model``, ``dtype`` and ``device`` are then unused).

    Returns:
        One row per (id, timestep), ids in forward order, timesteps ascending.

    Raises:
        UnknownActivationError: a glob matches no id. DatasetError: a bad dataset spec.
    """
    if denoiser is None:
        denoiser = Denoiser.load(model, dtype=dtype, device=device)
    run = DenoiserRun(denoiser, ExtractionSection(image_size=image_size), batch_size=batch_size)
    names = _chosen_ids(list(run.catalogue), ids, model)
    for timestep in timesteps:
        run.check_request(timestep, names)
    sources = _dataset_images(dataset, images)
    stats = {(name, t): ChannelStats() for t in timesteps for name in names}
    image_batches = batches(sources, batch_size)
    with progress_bar("inspecting", len(image_batches) * len(timesteps), progress) as advance:
        for batch in image_batches:
            latents, noise = run.latents_and_noise([image_tensor(source) for source in batch])
            for timestep in timesteps:
                captured = run.capture_at(latents, noise, timestep, names)
                for name in names:
                    stats[(name, timestep)].add(captured[name])
                advance(1)
    rows = []
    for timestep in sorted(timesteps):
        sigma = round(run.noise_level(timestep)[1], 4)
        for name in names:
            report = stats[(name, timestep)].report(factor)
            rows.append(InspectionRow(**{**asdict(report), "ratios": [round(r, 1) for r in report.ratios]},
                                      id=name, timestep=timestep, channels=run.catalogue[name].channels, sigma=sigma))
    return rows


def _chosen_ids(catalogue: list[str], selectors: Sequence[str] | None, model: str) -> list[str]:
    if not selectors:
        return [name for name in catalogue if not name.endswith("-map")]
    for selector in selectors:
        if not fnmatch.filter(catalogue, selector):
            examples = close_matches(selector.replace("*", ""), catalogue) or catalogue[:3]
            raise UnknownActivationError(
                f"--ids '{selector}' matches no activation of {model}; valid ids are like "
                f"{', '.join(examples)} (see `autosel catalog --model {model}`)"
            )
    return [name for name in catalogue if any(fnmatch.fnmatch(name, s) for s in selectors)]


def _dataset_images(dataset: str, count: int) -> list[Any]:
    kind = DatasetSpec.parse(dataset).kind
    if kind == "folder":
        task = make_task("segmentation", dataset, "search", test_images=count)
    else:
        task = make_task("correspondence", dataset, "search", pairs=count)
    return list(task.images)[:count]
