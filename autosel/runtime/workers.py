"""Workers that hold a model replica: screening shards, cache filling, trial evaluation and
held-out confirmation. :class:`Worker` is plain Python; :func:`start_ray_workers` runs copies
as Ray actors (``num_gpus=1`` each when CUDA is there, CPU actors otherwise). Only scalars and
small lists cross Ray: feature maps stay in the actor's memory or in the on-disk cache.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from autosel.cache.activations import ActivationCache
from autosel.config import FeatureConfig
from autosel.errors import AutoselError
from autosel.space import SearchSpace

RAY_OBJECT_STORE_BYTES = 256 * 2**20  # only scalars travel: a small store behaves on a 24 GB box


class Worker:
    """One model replica with the search's tasks and its view of the activation cache."""

    def __init__(
        self,
        space: SearchSpace,
        cache_dir: str,
        cache_memory: int,
        device: str | None = None,
        batch_size: int = 16,
        quiet: bool = True,
    ) -> None:
        from autosel.encoding import model_run

        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
        self.space = space
        self.progress = not quiet
        self.extractor = model_run(self.space, device=device, batch_size=batch_size)
        self.cache = ActivationCache(Path(cache_dir), memory_budget=cache_memory)
        self._tasks: dict[tuple[str, str, str], Any] = {}
        self._arrays: dict[tuple[str, int], Any] = {}
        self._prepared: tuple[tuple[str, int], ...] = ()
        self._encoded: Any = None
        self._screened: Any = None  # ScreenedFeatures while a screen's captures are kept for the cache
        self._keeps: bool | None = None  # whether they are (keeps_screen), decided at the first screen call
        self.confirm_task, self.confirm_dataset = self.space.confirmation()

    def pid(self) -> int:
        return os.getpid()

    def task(self, role: str, name: str | None = None, dataset: str | None = None) -> Any:
        """The search's task (or task ``name`` on ``dataset``, e.g. the confirmation's) on ``role``'s split, built once."""
        from autosel.tasks import make_task

        name, dataset = name or self.space.task, dataset or self.space.dataset
        if (name, role, dataset) not in self._tasks:
            self._tasks[name, role, dataset] = make_task(name, dataset, role, **self.space.task_options(name))
        return self._tasks[name, role, dataset]

    def encoded(self) -> Any:
        """The search split's latents and noise, encoded once per worker."""
        from autosel.encoding import encode_images

        if self._encoded is None:
            self._encoded = encode_images(self.task("search"), self.extractor, self.progress)
        return self._encoded

    def screen(self, todo: dict[int, list[str]]) -> list[tuple[list[dict[str, Any]], int]]:
        """Sweep rows for ``{timestep: [ids]}`` and the forwards run (stored by the driver)."""
        from autosel.screen.sweep import screen_rows

        todo = {int(t): list(names) for t, names in todo.items()}
        before = self.extractor.forward_count
        keeper = self._keeper(todo)
        rows = list(screen_rows(self.space, self.task("search"), self.extractor, todo, self.progress, self.encoded(),
                                keeper.add if keeper is not None else None))
        forwards = self.extractor.forward_count - before
        return [(records, forwards if n == 0 else 0) for n, records in enumerate(rows)]

    def _keeper(self, todo: dict[int, list[str]]) -> Any:
        """The :class:`~autosel.cache.fill.ScreenedFeatures` this screen adds to, when the whole
        screen's cache forms fit the cache's memory budget (:func:`~autosel.runtime.plan.keeps_screen`);
        else ``None``."""
        from autosel import variants
        from autosel.cache.fill import ScreenedFeatures, cached_shape
        from autosel.runtime.plan import keeps_screen

        if self._keeps is None:  # one decision for the whole screen, whichever timesteps come to this worker
            self._keeps = keeps_screen(self.space, self.extractor.catalogue.values(), len(self.task("search").images),
                                       self.cache.memory_budget)
        if not self._keeps:
            return None
        points = variants.with_variants(self.extractor.catalogue, [name for names in todo.values() for name in names])
        pairs = [(name, t) for t, names in todo.items() for name in names]
        keys = self._keys(pairs)
        shapes = {pair: cached_shape(points[pair[0]], len(self.task("search").images), keys[pair].resolution,
                                     keys[pair].projection) for pair in pairs}
        if self._screened is None:
            self._screened = ScreenedFeatures(keys, shapes)
        else:
            self._screened.keys.update(keys)
            self._screened.shapes.update(shapes)
        return self._screened

    def write_screened(self, entries: Sequence[tuple[str, int]]) -> int:
        """Write the kept screen captures of ``entries`` to the cache (no forward) and drop the
        rest; how many entries were written."""
        screened, self._screened = self._screened, None
        if screened is None:
            return 0
        return screened.write(self.cache, [(name, int(t)) for name, t in entries])

    def fill(self, entries: Sequence[tuple[str, int]]) -> int:
        """Compute the cache entries of ``entries`` that are missing; forwards run."""
        from autosel.cache.fill import fill_cache

        _, forwards = fill_cache(self.cache, self.extractor, self.task("search"), self._keys(entries), self.progress, self.encoded())
        return forwards

    def prepare(self, entries: Sequence[tuple[str, int]]) -> int:
        """Load (or compute) the cached search-split features of ``entries``; forwards run."""
        from autosel.cache.fill import fill_cache

        entries = tuple((name, int(t)) for name, t in entries)
        self._arrays, forwards = fill_cache(self.cache, self.extractor, self.task("search"), self._keys(entries), self.progress)
        self._prepared = entries
        return forwards

    def _keys(self, entries: Sequence[tuple[str, int]]) -> dict[tuple[str, int], Any]:
        from autosel.cache.fill import cache_keys

        search = self.space.search
        return cache_keys(self.extractor, self.task("search"), self.space.dataset, "search",
                          [(name, int(t)) for name, t in entries], search.cache_resolution, search.cache_dim, self.space.seed)

    def evaluate(self, items: Sequence[Sequence[Any]], entries: Sequence[tuple[str, int]]) -> dict[str, Any]:
        """Score a selection on the cache (preparing it first after a restart)."""
        from autosel.optimise.selection import Selection, score_cached

        if tuple((n, int(t)) for n, t in entries) != self._prepared:
            self.prepare(entries)
        started = time.perf_counter()
        selection = Selection(tuple((str(n), int(t), float(w)) for n, t, w in items))
        result = score_cached(self.task("search"), self._arrays, selection)
        return {"score": result.value, "seconds": time.perf_counter() - started, "pid": os.getpid()}

    def noise_levels(self, levels: list[Any]) -> dict[Any, tuple[float, float]]:
        """(t, σ) of each timestep (or σ) for this model at the space's image size."""
        return {level: self.extractor.noise_level(level) for level in levels}

    def timesteps_for(self, sigmas: list[float]) -> list[int]:
        """The training timestep nearest each σ for this model at the space's image size."""
        return [self.extractor.timestep_for_sigma(sigma) for sigma in sigmas]

    def confirm(self, configs: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        """Held-out results of configs through the real extractor at full channels, their
        denoiser forwards shared (see :func:`~autosel.evaluation.evaluate_configs`), and the
        forwards run."""
        from autosel.evaluation import evaluate_configs

        parsed = [FeatureConfig.from_dict(config) for config in configs]
        before = self.extractor.forward_count
        results = evaluate_configs(self.extractor.denoiser, parsed, self.task("heldout", self.confirm_task, self.confirm_dataset),
                                   batch_size=self.extractor.batch_size, progress=False)
        return [result.to_dict() for result in results], self.extractor.forward_count - before


class RayWorker(Worker):
    """A :class:`Worker` for Ray: an error while loading the replica is kept and raised by its
    first call, so the driver receives the original exception (a ``RayTaskError`` whose ``cause``
    is it) instead of an ``ActorDiedError`` that carries only the traceback's text."""

    def __init__(self, **options: Any) -> None:
        self._load_error: BaseException | None = None
        try:
            super().__init__(**options)
        except Exception as error:  # noqa: BLE001 - re-raised by pid(), which the driver awaits
            self._load_error = error

    def pid(self) -> int:
        if self._load_error is not None:
            raise self._load_error
        return super().pid()


def unwrap_worker_error(error: BaseException) -> BaseException:
    """The error a Ray worker raised, as the driver should report it: the worker's own
    :class:`AutoselError` (one line, its exit code) for a ``RayTaskError`` wrapping one; an
    :class:`AutoselError` naming the exception type and first line for anything else raised in a
    worker, or for a worker that died; ``error`` itself when it did not come from Ray."""
    try:
        import ray.exceptions as ray_errors
    except ImportError:
        return error
    if not isinstance(error, ray_errors.RayError):
        return error
    cause = getattr(error, "cause", None)
    if isinstance(cause, AutoselError):
        return cause
    if cause is not None:
        text = (str(cause).strip().splitlines() or [""])[0]
        return WorkerError(f"a search worker failed: {type(cause).__name__}: {text} (AUTOSEL_DEBUG=1 shows the traceback)")
    message = getattr(error, "error_msg", None) or str(error)
    last = [line.strip() for line in str(message).splitlines() if line.strip()]
    reason = last[-1] if last else type(error).__name__
    return WorkerError(f"a search worker died: {reason}")


class WorkerError(AutoselError):
    """A search worker raised an unexpected error or died (exit code 1: not the user's input)."""

    exit_code = 1


RAY_NOTICES = ("Token authentication is enabled for this Ray cluster",)
"""Ray's start-up notices about its defaults (nothing for a user to do): not printed. Its
other warnings, the opposite one (token authentication *disabled*) included, still are."""


def quiet_ray_notices() -> None:
    """Drop :data:`RAY_NOTICES` from Ray's log (once per process)."""
    import logging

    source = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(isinstance(f, _DropNotices) for f in source.filters):
        source.addFilter(_DropNotices())


class _DropNotices:
    """A logging filter dropping the records whose message starts with one of :data:`RAY_NOTICES`."""

    def filter(self, record: object) -> bool:
        return not str(getattr(record, "msg", "")).startswith(RAY_NOTICES)


def start_ray(address: str | None, num_cpus: int | None = None) -> Any:
    """Join ``address`` or start a local instance sized to the machine (explicit CPU count,
    bounded object store, no dashboard, logs at warning level)."""
    import logging

    import ray

    from autosel.log import adopt

    if ray.is_initialized():
        return ray
    adopt("ray")  # Ray's own warnings (e.g. about token auth) in autosel's format, JSON with --log-json
    level = logging.ERROR if logging.getLogger("autosel").level >= logging.ERROR else logging.WARNING  # --quiet
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    quiet_ray_notices()
    with keep_sigterm_handler():  # ray.init installs its own (sys.exit): autosel's clean stop must stay
        _init(ray, address, num_cpus, level)
    return ray


def _init(ray: Any, address: str | None, num_cpus: int | None, level: int) -> None:
    if address:
        ray.init(address=address, logging_level=level, log_to_driver=False)
    else:
        ray.init(  # "local": always a private instance, never a cluster a stale ray_current_cluster file names
            address="local", num_cpus=num_cpus or os.cpu_count() or 1, object_store_memory=RAY_OBJECT_STORE_BYTES,
            include_dashboard=False, logging_level=level, log_to_driver=False,
        )


@contextlib.contextmanager
def keep_sigterm_handler() -> Iterator[None]:
    """Put back the SIGTERM handler in place before the block (main thread only)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def start_ray_workers(count: int, **worker_options: Any) -> list[Any]:
    """``count`` Worker actors (restarted once if they die; calls in flight then fail)."""
    import ray
    import torch

    gpus = 1 if torch.cuda.is_available() else 0
    cpus = max(1, int(ray.available_resources().get("CPU", 1)) // max(count, 1)) if not gpus else 1
    remote = ray.remote(RayWorker).options(num_gpus=gpus, num_cpus=cpus, max_restarts=1, max_task_retries=0)
    actors = [remote.remote(**worker_options) for _ in range(count)]
    ray.get([actor.pid.remote() for actor in actors])  # wait for the replicas to load
    return actors
