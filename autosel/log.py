"""What autosel says while it works: progress bars, stage messages, warnings.

``configure`` sets it once per command: normal (stage messages and warnings on stderr,
progress bars), ``quiet`` (errors only: stdout is dropped, no bars, no warnings), or
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


def configure(quiet: bool = False, json_lines: bool = False) -> None:
    """Set up logging and progress for one command (see the module docstring)."""
    handler = logging.StreamHandler(sys.stderr)
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
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - results still go to files; errors to stderr


def event(message: str, **fields: object) -> None:
    """A stage message: text for people, ``fields`` as JSON keys with ``--log-json``."""
    logger.info(message, extra={"fields": {"event": message.split(":")[0], **fields}})
