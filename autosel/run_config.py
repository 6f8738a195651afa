"""Where a search keeps what it makes (:class:`RunConfig`) and what it runs on (:class:`Resources`).

With :class:`~autosel.space.SearchSpace` (what is searched: model, task, data, candidates,
timesteps, trials, seed, strategy) they are the three inputs of :func:`autosel.search`; each
knob lives in exactly one of them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from autosel.schema import Section


class RunConfig(Section):
    """Where results, the study and the activation cache live.

    Attributes:
        out: output folder; files go to ``OUT/<model>/<task>/``.
        storage: SQLAlchemy URL of the store; default ``sqlite:///OUT/autosel.db``.
        study: study name; default ``<model>-<task>``.
        cache_dir: activation cache folder; default ``$AUTOSEL_CACHE_DIR`` or ``~/.cache/autosel/activations``.
        cache_memory: RAM for cached activations per worker (``"4GB"`` or bytes); beyond it
            they are memory-mapped.
        progress: show progress bars.
    """

    out: Path = Path("results")
    storage: str | None = None
    study: str | None = None
    cache_dir: Path | None = None
    cache_memory: str | int = "4GB"
    progress: bool = True


class Resources(Section):
    """What the work runs on.

    Attributes:
        workers: model replicas: 0 runs in this process; default one Ray worker per GPU (one on
            a CPU box).
        device: ``cpu``, ``cuda``, ``cuda:1``…; default CUDA when available.
        batch_size: images per denoiser forward.
        ray_address: join this Ray cluster instead of starting one.
    """

    workers: int | None = Field(default=None, ge=0)
    device: str | None = None
    batch_size: int = Field(default=16, ge=1)
    ray_address: str | None = None
