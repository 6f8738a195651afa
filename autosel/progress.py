"""Progress bars on long work (rich), switched off for quiet or non-interactive callers."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator

from autosel.log import event

MESSAGE_EVERY_SECONDS = 5.0
"""Without a bar, progress is reported at most this often (and when the work is done)."""


@contextlib.contextmanager
def progress_bar(label: str, total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A transient bar with count, rate and ETA; yields ``advance(count)``. Without a bar
    (``AUTOSEL_PROGRESS=0``, which ``autosel --log-json`` and ``--quiet`` set) progress goes out as
    a stage message at most every few seconds and at the end (``--quiet`` drops those too);
    ``enabled=False`` says nothing."""
    if not enabled:
        yield lambda count: None
        return
    if os.environ.get("AUTOSEL_PROGRESS") == "0" or not _interactive():  # piped or a notebook's log: no bar, no blank lines
        with _progress_messages(label, total) as advance:
            yield advance
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TimeRemainingColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:  # type: ignore[no-untyped-def]
            return Text(f"{task.speed:.1f}/s" if task.speed else "", style="progress.data.speed")

    with Progress(label, BarColumn(), MofNCompleteColumn(), Rate(), TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda count: bar.advance(task, count)


def _interactive() -> bool:
    """Whether a live bar can be drawn: the console (stdout) is a terminal."""
    from rich.console import Console

    return Console().is_terminal


@contextlib.contextmanager
def _progress_messages(label: str, total: int) -> Iterator[Callable[[int], None]]:
    started = last = time.monotonic()
    done = 0

    def advance(count: int) -> None:
        nonlocal done, last
        done += count
        now = time.monotonic()
        if now - last >= MESSAGE_EVERY_SECONDS or done >= total:
            last = now
            rate = done / max(now - started, 1e-9)
            event(f"{label}: {done}/{total}", progress=label, done=done, total=total, per_second=round(rate, 3))

    yield advance
