"""Exceptions that carry a one-line, user-facing message.

The CLI prints ``str(error)`` of any :class:`AutoselError` on one line and exits with
``error.exit_code``; library callers catch them like any ``ValueError``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AutoselError(Exception):
    """Base class for errors caused by user input or the environment, not by a bug."""

    exit_code: int = 2


class UnknownModelError(AutoselError, ValueError):
    """A ``--model`` value is neither a registry name, a hub id, nor a local pipeline folder."""


class NotAPipelineError(AutoselError, ValueError):
    """A local folder was given as a model but does not hold a diffusers pipeline."""


class WeightsUnavailableError(AutoselError):
    """Model files are neither in the local Hugging Face cache nor downloadable."""


class UnsupportedModelError(AutoselError, ValueError):
    """The model loads, but its architecture is not one autosel can take features from yet."""


class InvalidInputError(AutoselError, ValueError):
    """A value given by the user is out of range or malformed (e.g. an image size)."""


class DatasetError(AutoselError, ValueError):
    """A proxy dataset is missing, malformed or empty; the message names the file and the reason."""


class UnknownActivationError(AutoselError, ValueError):
    """An activation id or glob matches nothing in the model's catalogue."""


def unknown_activation(name: str, known: Iterable[str], model_name: str, where: str = "") -> UnknownActivationError:
    """The one message for an id outside a catalogue: closest ids and the command listing them."""
    suggestions = close_matches(name, known)
    hint = f" Closest ids: {', '.join(suggestions)}." if suggestions else ""
    return UnknownActivationError(
        f"{where}'{name}' is not in the catalogue of {model_name}.{hint} "
        f"List them with `autosel catalog --model {model_name}`."
    )


def close_matches(word: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The closest spellings of ``word`` among ``choices``, best first (may be empty)."""
    return difflib.get_close_matches(word, list(choices), n=n, cutoff=0.5)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ``" Did you mean 'x'?"`` suffix, or an empty string when nothing is close."""
    matches = close_matches(word, choices)
    if not matches:
        return ""
    return " Did you mean " + " or ".join(repr(m) for m in matches) + "?"
