"""The ``t`` to give gdf so that it extracts at a config's timestep.

gdf does not use ``t`` as the timestep: it sets its pipeline's scheduler to 1000 inference
steps and takes the first timestep of img2img's ``get_timesteps(1000, t / 1000)``, i.e.
``scheduler.timesteps[(1000 − int(1000 · t/1000)) · order]``. That equals ``t`` on a DDIM
grid with ``steps_offset: 1`` (SD's), but PNDM (which SD 1.x ships) repeats a step, so gdf's
``t=50`` runs at 51, and a grid without the offset (DDPM, Euler's linspace: gdf puts Euler on
SD 2.1) runs at ``t − 1``. :func:`gdf_timestep` inverts the grid of the scheduler gdf would
load; :func:`shipped_scheduler` finds that scheduler's config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autosel.models import resolve_model

GDF_STEPS = 1000
"""gdf's ``scheduler.set_timesteps(1000)`` and ``get_timesteps(1000, t / 1000)``."""

_SD_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}
SHIPPED_SCHEDULERS: dict[str, dict[str, Any]] = {
    "sd14": {"_class_name": "PNDMScheduler", **_SD_BETAS, "skip_prk_steps": True, "steps_offset": 1},
    "sd15": {"_class_name": "PNDMScheduler", **_SD_BETAS, "skip_prk_steps": True, "steps_offset": 1},
    "sd20": {"_class_name": "PNDMScheduler", **_SD_BETAS, "skip_prk_steps": True, "steps_offset": 1},
    "sd21": {"_class_name": "PNDMScheduler", **_SD_BETAS, "skip_prk_steps": True, "steps_offset": 1},
    "sdxl": {"_class_name": "EulerDiscreteScheduler", **_SD_BETAS, "timestep_spacing": "leading", "steps_offset": 1},
}
"""``scheduler/scheduler_config.json`` of the registry models gdf loads, as the hub ships them
(used when the model's files are not in the local Hugging Face cache)."""


def shipped_scheduler(model: str) -> dict[str, Any] | None:
    """The scheduler config ``model`` ships (a folder's own file, the Hugging Face cache's copy,
    or :data:`SHIPPED_SCHEDULERS`); ``None`` when it cannot be read here."""
    spec = resolve_model(model)
    if spec.source == "folder" and spec.path is not None:
        path: Path | None = spec.path / "scheduler" / "scheduler_config.json"
    elif spec.hub_id:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(spec.hub_id, "scheduler/scheduler_config.json")
        path = Path(found) if isinstance(found, str) else None
    else:
        path = None
    if path is not None and path.is_file():
        return json.loads(path.read_text())
    return SHIPPED_SCHEDULERS.get(spec.name)


def gdf_grid(scheduler_config: dict[str, Any], version: str | None) -> tuple[list[float], int]:
    """(timesteps, order) of gdf's scheduler after ``set_timesteps(1000)``: gdf version ``2-1``
    swaps in an ``EulerDiscreteScheduler`` built from the config (its ``models.py``); every
    other version keeps the shipped class.

    Raises:
        ValueError: the config names a scheduler class diffusers does not have.
    """
    import diffusers

    name = "EulerDiscreteScheduler" if version == "2-1" else scheduler_config.get("_class_name", "")
    scheduler_class = getattr(diffusers, name, None)
    if scheduler_class is None:
        raise ValueError(f"unknown scheduler class '{name}'")
    scheduler = scheduler_class.from_config(scheduler_config)
    scheduler.set_timesteps(GDF_STEPS)
    return [float(value) for value in scheduler.timesteps], int(getattr(scheduler, "order", 1))


def gdf_timestep(timestep: int, scheduler_config: dict[str, Any], version: str | None) -> int | None:
    """The ``t`` for gdf that makes it run at ``timestep`` (0–999), or ``None`` when no ``t``
    lands exactly on it. Of several, the one closest to ``timestep``."""
    grid, order = gdf_grid(scheduler_config, version)
    matches = [t for t in range(1, GDF_STEPS + 1) if _first(grid, order, t) == timestep]
    return min(matches, key=lambda t: (abs(t - timestep), t)) if matches else None


def gdf_runs_at(t: int, scheduler_config: dict[str, Any], version: str | None) -> int:
    """The timestep gdf runs at when given ``t`` (the inverse of :func:`gdf_timestep`)."""
    grid, order = gdf_grid(scheduler_config, version)
    return int(round(_first(grid, order, t)))


def _first(grid: list[float], order: int, t: int) -> float:
    """The first timestep of img2img's ``get_timesteps(1000, t / 1000)`` on ``grid``, as gdf takes it."""
    start = max(GDF_STEPS - min(int(GDF_STEPS * (t / GDF_STEPS)), GDF_STEPS), 0) * order
    return grid[min(start, len(grid) - 1)]
