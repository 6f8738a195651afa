"""Worker pools: the one way the driver calls model replicas, in this process or on Ray actors.

A pool runs a :class:`~autosel.runtime.workers.Worker` method on its workers: ``imap`` spreads
calls round-robin and yields results as they finish, ``map`` returns them in call order,
``on_one`` runs on the first worker, ``broadcast`` on every worker; ``submit``/``poll``/``idle``
serve the trial driver (one trial per worker at a time). An error a Ray worker raised reaches
the caller as the worker's own :class:`~autosel.errors.AutoselError` (see
:func:`~autosel.runtime.workers.unwrap_worker_error`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from autosel.errors import AutoselError
from autosel.runtime.workers import Worker, start_ray, start_ray_workers, unwrap_worker_error

TrialResult = tuple[int, "dict[str, Any] | None", "Exception | None"]


class WorkerPool:
    """The interface both pools share (see the module docstring)."""

    def imap(self, method: str, calls: Sequence[tuple[Any, ...]]) -> Iterator[Any]:
        raise NotImplementedError

    def map(self, method: str, calls: Sequence[tuple[Any, ...]], advance: Callable[[int], None] | None = None) -> list[Any]:
        """Results in call order; ``advance(1)`` is called as each call finishes (a progress bar)."""
        raise NotImplementedError

    def on_one(self, method: str, *args: Any) -> Any:
        raise NotImplementedError

    def broadcast(self, method: str, *args: Any) -> list[Any]:
        raise NotImplementedError

    def idle(self) -> int:
        raise NotImplementedError

    def submit(self, tag: int, items: Sequence[Any], entries: Sequence[tuple[str, int]]) -> None:
        raise NotImplementedError

    def poll(self, timeout: float) -> Iterator[TrialResult]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the workers (a no-op in this process)."""


class LocalPool(WorkerPool):
    """One worker in this process: calls run one after another (experiments, ``--workers 0``)."""

    def __init__(self, worker: Worker) -> None:
        self.worker, self._ready = worker, []

    def imap(self, method: str, calls: Sequence[tuple[Any, ...]]) -> Iterator[Any]:
        for args in calls:
            yield getattr(self.worker, method)(*args)

    def map(self, method: str, calls: Sequence[tuple[Any, ...]], advance: Callable[[int], None] | None = None) -> list[Any]:
        results = []
        for result in self.imap(method, calls):
            results.append(result)
            if advance is not None:
                advance(1)
        return results

    def on_one(self, method: str, *args: Any) -> Any:
        return getattr(self.worker, method)(*args)

    def broadcast(self, method: str, *args: Any) -> list[Any]:
        return [self.on_one(method, *args)]

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
    """Ray actors, each a worker; trials run one per actor at a time."""

    def __init__(self, actors: list[Any]) -> None:
        self.actors, self.busy = list(actors), {}

    def imap(self, method: str, calls: Sequence[tuple[Any, ...]]) -> Iterator[Any]:
        import ray

        pending = [getattr(self.actors[n % len(self.actors)], method).remote(*args) for n, args in enumerate(calls)]
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                yield from ray.get(ready)
        except ray.exceptions.RayError as error:
            raise _from_worker(error) from None

    def map(self, method: str, calls: Sequence[tuple[Any, ...]], advance: Callable[[int], None] | None = None) -> list[Any]:
        import ray

        refs = [getattr(self.actors[n % len(self.actors)], method).remote(*args) for n, args in enumerate(calls)]
        try:
            pending = list(refs)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                ray.get(ready)  # raises a worker's error as soon as it happens
                if advance is not None:
                    advance(len(ready))
            return ray.get(refs)
        except ray.exceptions.RayError as error:
            raise _from_worker(error) from None

    def on_one(self, method: str, *args: Any) -> Any:
        import ray

        try:
            return ray.get(getattr(self.actors[0], method).remote(*args))
        except ray.exceptions.RayError as error:
            raise _from_worker(error) from None

    def broadcast(self, method: str, *args: Any) -> list[Any]:
        import ray

        try:
            return ray.get([getattr(actor, method).remote(*args) for actor in self.actors])
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

        if not self.busy:
            return
        ready, _ = ray.wait(list(self.busy), num_returns=len(self.busy), timeout=timeout)
        for ref in ready:
            tag, actor = self.busy.pop(ref)
            try:
                yield tag, ray.get(ref), None
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError, ray.exceptions.WorkerCrashedError) as error:
                self._recover(actor)
                yield tag, None, error

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors, self.busy = [], {}

    def _recover(self, actor: Any, seconds: float = 300) -> None:
        """Wait for a dead actor's restart (its replica reloads); drop it if it stays down."""
        import ray

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                ray.get(actor.pid.remote(), timeout=max(1.0, deadline - time.monotonic()))
                return
            except ray.exceptions.ActorUnavailableError:  # restarting: ask again shortly
                time.sleep(0.5)
            except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
                break
        self.actors.remove(actor)
        if not self.actors:
            raise AutoselError("every search worker died and none could be restarted; see the Ray logs")


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
