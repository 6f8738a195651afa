"""Worker pools: the one way the driver calls model replicas, in this process or on Ray actors.

A pool's stage calls are typed methods — :meth:`WorkerPool.screen` (spread round-robin,
results as they finish), :meth:`~WorkerPool.fill` (on the first worker),
:meth:`~WorkerPool.write_screened` and :meth:`~WorkerPool.prepare` (on every worker),
:meth:`~WorkerPool.confirm` (results in call order) — and ``submit``/``poll``/``idle`` serve the trial driver (one trial per worker at a
time; :class:`~autosel.optimise.driver.TrialRunner`). Below them each pool runs a
:class:`~autosel.runtime.workers.Worker` method given as the function itself. An error a Ray
worker raised reaches the caller as the worker's own :class:`~autosel.errors.AutoselError` (see
:func:`~autosel.runtime.workers.unwrap_worker_error`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from autosel.errors import AutoselError
from autosel.optimise.driver import TrialResult
from autosel.runtime.workers import Worker, start_ray, start_ray_workers, unwrap_worker_error

log = logging.getLogger("autosel.search")

WorkerMethod = Callable[..., Any]
"""A :class:`~autosel.runtime.workers.Worker` method, unbound (``Worker.screen``)."""

SweepRows = tuple[list[dict[str, Any]], int]
"""One timestep's sweep rows and the forwards run for them."""


class WorkerPool:
    """The interface both pools share (see the module docstring)."""

    @property
    def size(self) -> int:
        """How many workers the pool has."""
        raise NotImplementedError

    def screen(self, todo: dict[int, list[str]]) -> Iterator[SweepRows]:
        """Sweep rows of ``{timestep: [ids]}``, one timestep per call spread over the workers, as they finish."""
        for rows in self._imap(Worker.screen, [({t: todo[t]},) for t in sorted(todo)]):
            yield from rows

    def fill(self, entries: Sequence[tuple[str, int]]) -> int:
        """Compute the missing cache entries ``entries`` on the first worker; forwards run."""
        return self._on_one(Worker.fill, entries)

    def write_screened(self, entries: Sequence[tuple[str, int]]) -> int:
        """Write the cache entries of ``entries`` each worker kept from its part of the screen
        (no forward); the entries written."""
        return sum(self._broadcast(Worker.write_screened, entries))

    def prepare(self, entries: Sequence[tuple[str, int]]) -> list[int]:
        """Load the cached features of ``entries`` on every worker; forwards each ran."""
        return self._broadcast(Worker.prepare, entries)

    def confirm(
        self, groups: Sequence[Sequence[dict[str, Any]]], advance: Callable[[int], None] | None = None
    ) -> list[tuple[list[dict[str, Any]], int]]:
        """Held-out results of groups of feature configs (as dicts), a group per call (its
        forwards shared), in order: each group's results and forwards; ``advance(1)`` per group."""
        return self._map(Worker.confirm, [(list(group),) for group in groups], advance)

    def noise_levels(self, levels: Sequence[Any]) -> dict[Any, tuple[float, float]]:
        """(t, σ) of each timestep (or σ) for the space's model at its image size (on the first worker)."""
        return self._on_one(Worker.noise_levels, list(levels))

    def timesteps_for(self, sigmas: Sequence[float]) -> list[int]:
        """The training timestep nearest each σ for the space's model at its image size (on the first worker)."""
        return self._on_one(Worker.timesteps_for, list(sigmas))

    def idle(self) -> int:
        """Workers free to take a trial."""
        raise NotImplementedError

    def submit(self, tag: int, items: Sequence[Any], entries: Sequence[tuple[str, int]]) -> None:
        """Start scoring a selection (``items``) on the cached ``entries`` on an idle worker."""
        raise NotImplementedError

    def poll(self, timeout: float) -> Iterator[TrialResult]:
        """(tag, result, error) of the trials finished within ``timeout`` seconds."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the workers (a no-op in this process)."""

    def _imap(self, method: WorkerMethod, calls: Sequence[tuple[Any, ...]]) -> Iterator[Any]:
        """``method(*args)`` per call, spread over the workers, results as they finish."""
        raise NotImplementedError

    def _map(self, method: WorkerMethod, calls: Sequence[tuple[Any, ...]], advance: Callable[[int], None] | None = None) -> list[Any]:
        """Results in call order; ``advance(1)`` is called as each call finishes (a progress bar)."""
        raise NotImplementedError

    def _on_one(self, method: WorkerMethod, *args: Any) -> Any:
        raise NotImplementedError

    def _broadcast(self, method: WorkerMethod, *args: Any) -> list[Any]:
        raise NotImplementedError


class LocalPool(WorkerPool):
    """One worker in this process: calls run one after another (experiments, ``--workers 0``)."""

    def __init__(self, worker: Worker) -> None:
        self.worker, self._ready = worker, []

    @property
    def size(self) -> int:
        return 1

    def _imap(self, method: WorkerMethod, calls: Sequence[tuple[Any, ...]]) -> Iterator[Any]:
        for args in calls:
            yield method(self.worker, *args)

    def _map(self, method: WorkerMethod, calls: Sequence[tuple[Any, ...]], advance: Callable[[int], None] | None = None) -> list[Any]:
        results = []
        for result in self._imap(method, calls):
            results.append(result)
            if advance is not None:
                advance(1)
        return results

    def _on_one(self, method: WorkerMethod, *args: Any) -> Any:
        return method(self.worker, *args)

    def _broadcast(self, method: WorkerMethod, *args: Any) -> list[Any]:
        return [self._on_one(method, *args)]

    def idle(self) -> int:
        return 0 if self._ready else 1

    def submit(self, tag: int, items: Sequence[Any], entries: Sequence[tuple[str, int]]) -> None:
        try:
            self._ready.append((tag, self.worker.evaluate(items, entries), None))
        except Exception as error:  # noqa: BLE001 - reported to the driver as a failed trial
            self._ready.append((tag, None, error))

    def poll(self, timeout: float) -> Iterator[TrialResult]:
        ready, self._ready = self._ready, []
        yield from ready


class RayPool(WorkerPool):
    """Ray actors, each a worker; trials run one per actor at a time.

    An actor that dies (its process, or its node) is set aside while Ray restarts it: the
    other actors go on with the trials at once, and it takes trials again when it answers. A
    lost node therefore costs the trial that was running there (queued again) and that
    replica's share of the work until the actor has been restarted on a node with room; the
    driver waits only when no actor is left (at most :data:`RESTART_SECONDS`).
    """

    RESTART_SECONDS = 300.0
    NODE_DEATH_SECONDS = 30.0

    def __init__(self, actors: list[Any]) -> None:
        self.actors, self.busy = list(actors), {}
        self.recovering: dict[Any, tuple[Any, float]] = {}  # pid() call → (actor, since)
        self.nodes = self._alive_nodes()

    @property
    def size(self) -> int:
        return len(self.actors)

    @staticmethod
    def _alive_nodes() -> set[str]:
        import ray

        try:
            return {node["NodeID"] for node in ray.nodes() if node.get("Alive")}
        except Exception:  # noqa: BLE001 - only used to name a failure
            return set()

    def _nodes_lost(self) -> bool:
        """True when a node that was alive when the pool started is gone. On a cluster (more than
        one node) it waits up to :data:`NODE_DEATH_SECONDS` for the GCS to notice; a single
        machine's worker crash is never a lost node (the driver would be gone too)."""
        if len(self.nodes) < 2:
            return False
        deadline = time.monotonic() + self.NODE_DEATH_SECONDS
        while True:
            if self.nodes - self._alive_nodes():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)

    def _imap(self, method: WorkerMethod, calls: Sequence[tuple[Any, ...]]) -> Iterator[Any]:
        for _, result in self._completed(method, calls):
            yield result

    def _map(self, method: WorkerMethod, calls: Sequence[tuple[Any, ...]], advance: Callable[[int], None] | None = None) -> list[Any]:
        results: dict[int, Any] = {}
        for index, result in self._completed(method, calls):
            results[index] = result
            if advance is not None:
                advance(1)
        return [results[index] for index in range(len(calls))]

    def _completed(self, method: WorkerMethod, calls: Sequence[tuple[Any, ...]]) -> Iterator[tuple[int, Any]]:
        """(index, result) of each call as it completes, spread over the actors; a call whose
        actor died (a lost node) is sent again to a live one, and the actor set aside. A
        worker's own error stops the stage (raised as the worker's one line)."""
        import ray

        self._wait_for_one()
        pending = {_remote(self.actors[n % len(self.actors)], method).remote(*args): (n, self.actors[n % len(self.actors)])
                   for n, args in enumerate(calls)}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                index, actor = pending.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError):
                    if actor in self.actors:
                        self._recover(actor)
                    self._wait_for_one()
                    again = self.actors[index % len(self.actors)]
                    log.warning("%s call %d lost with its worker; it runs again on another", method.__name__, index)
                    pending[_remote(again, method).remote(*calls[index])] = (index, again)
                    continue
                yield index, result
        except ray.exceptions.RayError as error:
            raise _from_worker(error) from None

    def _on_one(self, method: WorkerMethod, *args: Any) -> Any:
        import ray

        self._wait_for_one()
        try:
            return ray.get(_remote(self.actors[0], method).remote(*args))
        except ray.exceptions.RayError as error:
            raise _from_worker(error) from None

    def _broadcast(self, method: WorkerMethod, *args: Any) -> list[Any]:
        import ray

        self._wait_for_one()
        try:
            return ray.get([_remote(actor, method).remote(*args) for actor in self.actors])
        except ray.exceptions.RayError as error:
            raise _from_worker(error) from None

    def idle(self) -> int:
        return len(self.actors) - len(self.busy)

    def submit(self, tag: int, items: Sequence[Any], entries: Sequence[tuple[str, int]]) -> None:
        taken = {id(actor) for _, actor in self.busy.values()}
        actor = next(a for a in self.actors if id(a) not in taken)
        self.busy[actor.evaluate.remote([list(i) for i in items], [list(p) for p in entries])] = (tag, actor)

    def poll(self, timeout: float) -> Iterator[TrialResult]:
        import ray

        self._check_recovering()
        if not self.busy:
            return
        ready, _ = ray.wait(list(self.busy), num_returns=len(self.busy), timeout=timeout)
        for ref in ready:
            tag, actor = self.busy.pop(ref)
            try:
                yield tag, ray.get(ref), None
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError, ray.exceptions.WorkerCrashedError,
                    ray.exceptions.NodeDiedError) as error:
                error.node_lost = self._nodes_lost()  # the driver says "node lost" rather than the worker's error
                self._recover(actor)
                yield tag, None, error

    def close(self) -> None:
        import ray

        for actor in [*self.actors, *(actor for actor, _ in self.recovering.values())]:
            with contextlib.suppress(Exception):  # an actor of a lost node may be gone already
                ray.kill(actor)
        self.actors, self.busy, self.recovering = [], {}, {}

    def _recover(self, actor: Any) -> None:
        """Set a dead actor aside until its restart answers (see :meth:`_check_recovering`)."""
        if actor in self.actors:
            self.actors.remove(actor)
        self.recovering[actor.pid.remote()] = (actor, time.monotonic())
        self._check_recovering()

    def _check_recovering(self, timeout: float = 0) -> None:
        """Take back the set-aside actors that answer again; drop those Ray gave up on, or that
        stayed down :data:`RESTART_SECONDS`.

        Raises:
            AutoselError: no actor is left, alive or restarting.
        """
        import ray

        if self.recovering:
            ready, _ = ray.wait(list(self.recovering), num_returns=len(self.recovering), timeout=timeout)
            for ref in ready:
                actor, since = self.recovering.pop(ref)
                try:
                    ray.get(ref)
                    self.actors.append(actor)
                except ray.exceptions.ActorUnavailableError:  # restarting: ask again
                    self.recovering[actor.pid.remote()] = (actor, since)
                except ray.exceptions.RayError:  # out of restarts
                    continue
            now = time.monotonic()
            for ref, (actor, since) in list(self.recovering.items()):
                if now - since > self.RESTART_SECONDS:
                    del self.recovering[ref]
        if not self.actors and not self.recovering:
            raise AutoselError("every search worker died and none could be restarted; see the Ray logs")

    def _wait_for_one(self) -> None:
        """Return once at least one actor is alive (waiting on restarts when none is)."""
        deadline = time.monotonic() + self.RESTART_SECONDS
        while not self.actors:
            self._check_recovering(timeout=max(0.1, min(5.0, deadline - time.monotonic())))
            if time.monotonic() > deadline and not self.actors:
                raise AutoselError("every search worker died and none could be restarted; see the Ray logs")


def _remote(actor: Any, method: WorkerMethod) -> Any:
    """The actor's handle of ``method`` (a :class:`Worker` method): Ray exposes an actor's methods by name."""
    return getattr(actor, method.__name__)


def _from_worker(error: BaseException) -> BaseException:
    """The error as the driver reports it (the traceback stays with ``AUTOSEL_DEBUG=1``)."""
    return error if os.environ.get("AUTOSEL_DEBUG") else unwrap_worker_error(error)


def start_pool(workers: int | None, ray_address: str | None, **worker_options: Any) -> WorkerPool:
    """``workers`` model replicas: 0 in this process; else Ray actors (default: one per GPU,
    one on a CPU box), on the cluster at ``ray_address`` or a local instance."""
    if workers == 0:
        return LocalPool(Worker(**worker_options))
    start_ray(ray_address)
    if workers is None:
        import torch

        workers = max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1
    try:
        return RayPool(start_ray_workers(workers, **worker_options))
    except Exception as error:
        raise _from_worker(error) from None
