"""What autosel says while it works: progress bars, stage messages, warnings.

``configure`` sets it once per command: normal (stage messages and warnings on stderr,
progress bars), ``quiet`` (errors only: no bars, no warnings; the CLI also drops stdout), or
``json_lines`` (one JSON object per message on stderr, no bars: for machines). Ray's and
Optuna's own logs are held to warnings.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings

logger = logging.getLogger("autosel")


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname.lower(),
                    "logger": record.name, "message": record.getMessage()}
        document.update(getattr(record, "fields", {}))
        return json.dumps(document, default=str)


_json_lines = False


QUIET_LIBRARIES = ("diffusers", "transformers")
"""Libraries whose info logs and warnings (``accelerate`` missing, deprecations) are not for autosel's users."""


def quiet_libraries() -> None:
    """Keep :data:`QUIET_LIBRARIES` to errors, for the CLI and the Python API alike: the
    environment variables reach them when loaded later (a user's own setting wins), the levels
    apply to those already loaded."""
    for name in QUIET_LIBRARIES:
        os.environ.setdefault(f"{name.upper()}_VERBOSITY", "error")
        if name in sys.modules and os.environ[f"{name.upper()}_VERBOSITY"] == "error":
            logging.getLogger(name).setLevel(logging.ERROR)


def configure(quiet: bool = False, json_lines: bool = False) -> None:
    """Set up logging and progress for one command (see the module docstring)."""
    global _json_lines
    _json_lines = json_lines
    handler = _CurrentStderr()
    handler.setFormatter(_JsonLines() if json_lines else logging.Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.ERROR if quiet else logging.INFO)
    for name in ("optuna", "ray", "diffusers", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR if quiet else logging.WARNING)
    if quiet or json_lines:
        os.environ["AUTOSEL_PROGRESS"] = "0"
    if quiet:
        warnings.simplefilter("ignore")
        os.environ["PYTHONWARNINGS"] = "ignore"  # worker processes too


class _CurrentStderr(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is when a record is emitted: a live progress
    bar (rich) redirects it to print lines above the bar, so stage messages never land on the
    bar's line (a handler holding the original stream would write over it)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201 - logging's attribute
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:  # StreamHandler.__init__ assigns it
        pass


class _PinnedFormat(_CurrentStderr):
    """A stderr handler whose formatter cannot be replaced later (``ray.init`` sets its own
    format on every handler of the ``ray`` logger)."""

    def setFormatter(self, fmt: logging.Formatter | None) -> None:  # noqa: N802 - logging's name
        if self.formatter is None:
            super().setFormatter(fmt)


def adopt(name: str) -> None:
    """Print library logger ``name``'s records in autosel's format (JSON lines with
    ``--log-json``); call it after the library has set up its own handlers."""
    if not logger.handlers:
        return
    handler = _PinnedFormat()
    handler.setFormatter(logger.handlers[0].formatter)
    library = logging.getLogger(name)
    library.handlers[:] = [handler]
    library.propagate = False


def json_lines() -> bool:
    """True when messages go out as JSON lines (``--log-json``)."""
    return _json_lines


def error_line(message: str, exit_code: int) -> str:
    """The one stderr line of a failed command: ``error: …``, or a JSON object with ``--log-json``."""
    if not _json_lines:
        return f"error: {message}"
    return json.dumps({"level": "error", "logger": "autosel", "message": message, "exit_code": exit_code})


def event(message: str, **fields: object) -> None:
    """A stage message: text for people, ``fields`` as JSON keys with ``--log-json``."""
    logger.info(message, extra={"fields": {"event": message.split(":")[0], **fields}})
