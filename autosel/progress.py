"""Progress bars on long work (rich), switched off for quiet or non-interactive callers."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress_bar(label: str, total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A transient bar with count, rate and ETA; yields ``advance(count)`` (a no-op when disabled,
    or when ``AUTOSEL_PROGRESS=0``, which ``autosel --quiet`` and ``--log-json`` set)."""
    if not enabled or os.environ.get("AUTOSEL_PROGRESS") == "0":
        yield lambda count: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TimeRemainingColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:  # type: ignore[no-untyped-def]
            return Text(f"{task.speed:.1f}/s" if task.speed else "", style="progress.data.speed")

    with Progress(label, BarColumn(), MofNCompleteColumn(), Rate(), TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda count: bar.advance(task, count)
