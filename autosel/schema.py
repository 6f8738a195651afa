"""The one base for autosel's YAML documents (feature configs, search spaces, run settings):
immutable pydantic sections that refuse unknown keys, a safe YAML loader, one-line validation
errors, and the one definition of a valid noise level: a timestep t (0…999) or a σ (0–1).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from autosel.errors import AutoselError, InvalidInputError, did_you_mean

NUM_TRAIN_TIMESTEPS = 1000
"""Timesteps are on the 0…999 scale of the models' training schedules (0 = clean)."""

SectionT = TypeVar("SectionT", bound="Section")


class ConfigError(AutoselError, ValueError):
    """A YAML document (feature config, search space) is missing, not YAML, or not valid."""


class Section(BaseModel):
    """An immutable block of a document; unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)  # every number finite


class Sigma(float):
    """A noise level given as σ (0–1) instead of a timestep: the fraction of noise in the
    denoiser's input (rectified flow: x_t = (1 − σ)·x_0 + σ·ε; DDPM: σ = √(1 − ᾱ_t)).

    It keys caches and groups apart from an integer timestep of the same value (``Sigma(0.0)``
    is not ``0``) and prints as ``σ0.26``.
    """

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sigma) and float(self) == float(other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(("sigma", float(self)))

    def __repr__(self) -> str:
        return f"σ{float(self):g}"

    __str__ = __repr__


Level = Union[int, Sigma]
"""A noise level: a timestep t on the 0…999 scale, or a :class:`Sigma`."""


def level_key(level: Level) -> tuple[int, float]:
    """A sort key: timesteps ascending, then σ values ascending."""
    return (1, float(level)) if isinstance(level, Sigma) else (0, float(level))


def parse_level(text: str) -> Level:
    """``"260"`` → 260, ``"σ0.26"`` (or ``"s0.26"``) → ``Sigma(0.26)``.

    Raises:
        InvalidInputError: neither an integer timestep nor σ followed by a number in 0–1.
    """
    if text[:1] in ("σ", "s"):
        try:
            return check_sigma(float(text[1:]))
        except ValueError:
            pass
    else:
        try:
            return check_timestep(int(text))
        except ValueError:
            pass
    raise InvalidInputError(f"noise level '{text}' is neither a timestep 0…999 nor σ0…1 (e.g. 260 or σ0.26)")


def check_sigma(sigma: float) -> Sigma:
    """``sigma`` as a :class:`Sigma` if it is in 0…1.

    Raises:
        InvalidInputError: naming the value and the valid range.
    """
    if not 0.0 <= float(sigma) <= 1.0:
        raise InvalidInputError(f"sigma {sigma} is outside 0…1 (0 = clean, 1 = pure noise)")
    return Sigma(float(sigma))


def check_timestep(timestep: int, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> int:
    """``timestep`` if it is on the schedule (0 ≤ t < ``num_train_timesteps``).

    Raises:
        InvalidInputError: naming the timestep and the valid range.
    """
    if not 0 <= timestep < num_train_timesteps:
        raise InvalidInputError(f"timestep {timestep} is outside the scheduler's range 0…{num_train_timesteps - 1}")
    return timestep


def read_yaml(path: str | Path, kind: str) -> Any:
    """The data of a YAML file (``yaml.safe_load``: no objects are constructed); ``None`` for an
    empty file. ``kind`` names the document in errors ("feature config", "search space").

    Raises:
        ConfigError: missing or unreadable file, or invalid YAML (with line and column).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {kind} file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None


def validate(cls: type[SectionT], data: Any, source: str) -> SectionT:
    """``cls`` validated from ``data``; errors name ``source``, the field path and what is valid.

    Raises:
        ConfigError: not a mapping, or an invalid or unknown field (one line).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return cls.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigError(f"{source}: {describe_validation_error(error, cls)}") from None


def describe_validation_error(error: ValidationError, root: type[BaseModel]) -> str:
    """One line for a pydantic error: field path, problem, and what would be valid (an unknown
    key lists the fields of its own section, with the closest one)."""
    parts: dict[str, str] = {}
    for detail in error.errors():
        location = [str(part) for part in detail["loc"] if not str(part).startswith(("int", "tuple", "function"))]
        path = ".".join(location) or "(top level)"
        path = re.sub(r"\.(\d+)", r"[\1]", path)
        if path in parts:
            continue  # a union reports one error per member: the first says enough
        message = detail["msg"]
        if detail["type"] == "extra_forbidden":
            section = _section_of(root, location[:-1])
            valid = list(section.model_fields) if section is not None else []
            message = f"unknown field.{did_you_mean(location[-1], valid)} Valid fields: {', '.join(valid)}"
        elif detail["type"] == "missing":
            message = "required field is missing"
        elif "Value error, " in message:
            message = message.split("Value error, ", 1)[1]
        parts[path] = f"{path}: {message}"
    shown = list(parts.values())[:3]
    more = len(parts) - len(shown)
    return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def _section_of(root: type[BaseModel], location: list[str]) -> type[BaseModel] | None:
    """The model class at ``location`` (field names; list indices skipped) below ``root``."""
    model: type[BaseModel] | None = root
    for name in location:
        if name.isdigit() or model is None:
            continue
        field = model.model_fields.get(name)
        model = _model_in(field.annotation) if field is not None else None
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel class inside an annotation such as ``Section``, ``list[Section]``, ``Section | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in getattr(annotation, "__args__", ()) or ():
        found = _model_in(argument)
        if found is not None:
            return found
    return None
