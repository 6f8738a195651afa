"""What a test needs from the machine: skip with the reason outside CI, fail in CI (``CI`` set),
where everything the suite needs is installed (PostgreSQL, Chromium, Playwright)."""

from __future__ import annotations

import os
import socket

import pytest


def required_in_ci(message: str) -> None:
    """Fail in CI, where everything the tests need is installed; skip elsewhere, saying why."""
    if os.environ.get("CI"):
        pytest.fail(f"{message}: required in CI")
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server a test starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
