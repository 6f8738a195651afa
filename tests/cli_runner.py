"""The ``autosel`` command line run in the test process (see :func:`invoke_cli`)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass


@dataclass
class CliResult:
    """What a shell would see of one ``autosel`` command."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def code(self) -> int:
        return self.returncode


def invoke_cli(*args: object, env: dict[str, str] | None = None) -> CliResult:
    """Run ``autosel ARGS…`` in this process through Typer's ``CliRunner``: the application the
    console script runs, error boundary included, without a Python start-up per call. Global
    state a command sets (log handlers, library log levels, environment, warning filters, a Ray
    instance it started) is put back afterwards, as the end of a process would."""
    import logging
    import traceback
    import warnings
    from unittest import mock

    from typer.testing import CliRunner

    from autosel.cli import app

    names = ("autosel", "ray", "optuna", "diffusers", "transformers")
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level, logging.getLogger(name).propagate)
             for name in names}
    ray_was_up = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    try:
        with warnings.catch_warnings(), mock.patch.dict(os.environ):
            result = CliRunner().invoke(app, [str(arg) for arg in args], env=env)
    finally:
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:], logger.propagate = handlers, propagate
            logger.setLevel(level)
        if not ray_was_up and "ray" in sys.modules and sys.modules["ray"].is_initialized():
            sys.modules["ray"].shutdown()
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(*result.exc_info))  # as Python would print it
    return CliResult(result.exit_code, result.stdout, stderr)
