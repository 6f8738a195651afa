"""The feature config: the product's output, a versioned and validated YAML document.

A :class:`FeatureConfig` holds everything needed to reproduce a set of features: the model,
how images become noisy latents, which activations at which timesteps, how they are
aggregated, and (for search results) the score and provenance. It validates on construction,
is immutable, and round-trips through ``to_dict``/``from_dict`` and YAML (safe loading only).

Example:
    >>> config = FeatureConfig.from_yaml("results/presets/meng-practical-sdxl.yaml")
    >>> config.ids[:2], config.timesteps
    (['up-level0-repeat0-vit-block7-out', 'up-level0-repeat0-vit-block5-out'], [50])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, Field, field_validator, model_validator

from autosel.limits import MAX_TEXT_CHARS
from autosel.schema import NUM_TRAIN_TIMESTEPS, ConfigError, Section, check_timestep, read_yaml, validate

__all__ = ["NUM_TRAIN_TIMESTEPS", "ConfigError", "FeatureConfig"]

CONFIG_VERSION = 1

ImageSizeField = Union[int, tuple[int, int]]
DType = Literal["float32", "float16", "bfloat16"]


class ModelSection(Section):
    """Which model: a registry name, hub id or local folder, with revision and weight dtype."""

    name: str = Field(min_length=1, description="registry short name, hub id or local pipeline folder")
    revision: str | None = Field(default=None, description="hub revision (branch, tag or commit)")
    dtype: DType = Field(default="float32", description="denoiser dtype (the VAE always runs in float32)")


class ExtractionSection(Section):
    """How images become noisy latents."""

    image_size: ImageSizeField | None = Field(
        default=None, description="pixels: N (square) or [H, W]; default: the model's native size"
    )
    resize: Literal["stretch", "center-crop"] = Field(
        default="stretch", description="stretch to image_size, or resize the short side and crop the centre"
    )
    prompt: str = Field(default="", max_length=MAX_TEXT_CHARS, description="text prompt, encoded once")
    noise_seed: int = Field(default=0, ge=0, description="seed of the noise added to the latents")
    ensemble: int = Field(default=1, ge=1, le=64, description="noise draws averaged per image")


class Activation(Section):
    """One activation at one timestep."""

    id: str = Field(min_length=1, description="activation id (see `autosel catalog`)")
    timestep: int = Field(description="diffusion timestep, 0…999 (0 = clean)")
    weight: float = Field(default=1.0, gt=0, description="weight in the aggregated map")
    post: Literal["none", "l2", "drop-massive"] = Field(
        default="none",
        description="post-processing: none, l2 over channels, or drop-massive (zero the channels whose mean "
        "|value| over the batch's image tokens exceeds 100x the median channel's; see autosel inspect)",
    )

    @property
    def label(self) -> str:
        """``id@t``, or ``id:post@t`` when post-processed (the search's candidate spelling)."""
        post = "" if self.post == "none" else f":{self.post}"
        return f"{self.id}{post}@{self.timestep}"

    @field_validator("timestep")
    @classmethod
    def _on_the_schedule(cls, value: int) -> int:
        return check_timestep(value)


class AggregationSection(Section):
    """How the activations become one feature map."""

    resolution: ImageSizeField | None = Field(
        default=None, description="target H×W (N or [H, W]); default: the largest activation's"
    )
    l2_normalize: bool = Field(default=True, description="L2-normalise each activation over channels first")
    combine: Literal["concat", "weighted-sum"] = Field(default="concat")
    pca_dim: int | None = Field(default=None, ge=1, description="reduce the combined map to this many channels")


class ScoreSection(Section):
    """How good the config is, and on what (filled in by the search)."""

    task: str
    dataset: str
    split: str
    metric: str
    normalisation: str | None = None
    averaging: str | None = None
    protocol: str | None = Field(default=None, description="evaluation protocol (autosel.protocols), e.g. autosel or dift")
    value: float
    search_value: float | None = None
    search_metric: str | None = Field(
        default=None, description="the metric of search_value where it differs from metric (a label-free search confirmed on labels)"
    )
    search_dataset: str | None = Field(default=None, description="the dataset of search_value where it differs from dataset")
    presets: dict[str, float] = Field(default_factory=dict)


class ProvenanceSection(Section):
    """Where the config came from."""

    source: str | None = None
    study: str | None = None
    storage: str | None = None
    trial: int | None = None
    date: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)

    @field_validator("storage")
    @classmethod
    def _mask_password(cls, url: str | None) -> str | None:
        return mask_password(url) if url else url


def local_model_folder(name: str, base: Path) -> Path | None:
    """The absolute folder a model name means when it is a path (``./m``, ``../m``, ``~/m``,
    ``/abs/m``, or a relative path with a slash that exists under ``base``); ``None`` for
    registry names and hub ids. Relative paths resolve from ``base``."""
    path = Path(name).expanduser()
    if path.is_absolute():
        return path
    if name.startswith((".", "~")) or ("/" in name and (base / path).is_dir()):
        return (base / path).resolve()
    return None


class FeatureConfig(Section):
    """A complete, validated feature config. Immutable: changes return a new object."""

    version: Literal[1] = CONFIG_VERSION
    model: ModelSection
    extraction: ExtractionSection = Field(default_factory=ExtractionSection)
    activations: list[Activation] = Field(min_length=1)
    aggregation: AggregationSection = Field(default_factory=AggregationSection)
    score: ScoreSection | None = None
    provenance: ProvenanceSection | None = None

    @model_validator(mode="after")
    def _check(self) -> FeatureConfig:
        seen: set[str] = set()
        for activation in self.activations:
            if activation.id in seen:
                raise ValueError(f"activation '{activation.id}' is listed twice; each id may appear once")
            seen.add(activation.id)
        return self

    @property
    def ids(self) -> list[str]:
        """Activation ids, in the order listed."""
        return [activation.id for activation in self.activations]

    @property
    def timesteps(self) -> list[int]:
        """Distinct timesteps, ascending: one denoiser forward each."""
        return sorted({activation.timestep for activation in self.activations})

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts, scalars), leaving out empty optional blocks."""
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<config>") -> FeatureConfig:
        """Validate ``data``; errors name ``source``, the field path and what is valid.

        Raises:
            ConfigError: on any invalid or unknown field.
        """
        return validate(cls, data, source)

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The YAML text; also written to ``path`` when given. A local model folder given
        relative to the working directory is written absolute, so the file works from anywhere."""
        data = self.to_dict()
        folder = local_model_folder(self.model.name, Path.cwd())
        if folder is not None and folder.is_dir():
            data["model"]["name"] = str(folder)
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
        if path is not None:
            from autosel.atomic import write_text

            write_text(path, text)  # whole or not at all: a full disk keeps the previous file
        return text

    @classmethod
    def from_yaml(cls, path: str | Path) -> FeatureConfig:
        """Load and validate a YAML file (``yaml.safe_load``: no objects are constructed), or the
        shipped preset of that name (``"meng-practical-sdxl"``, see ``autosel presets``).

        Raises:
            ConfigError: missing or unreadable file, invalid YAML, or invalid content.
        """
        from autosel.resources import config_path

        path = config_path(path)  # a shipped preset by its name, too
        data = read_yaml(path, "feature config")
        config = cls.from_dict(data if data is not None else {}, source=str(path))
        folder = local_model_folder(config.model.name, Path(path).resolve().parent)
        if folder is None:
            return config
        if not folder.is_dir():
            raise ConfigError(
                f"{path}: model.name '{config.model.name}': no folder at {folder} (a relative model folder "
                "is read from the config file's folder; write it absolute or relative to the config)"
            )
        return config.replace(model={**config.model.model_dump(), "name": str(folder)})

    def replace(self, **changes: Any) -> FeatureConfig:
        """A validated copy with top-level fields replaced (sections as objects or dicts)."""
        data = self.to_dict()
        data.update({key: value.model_dump(mode="json") if isinstance(value, BaseModel) else value for key, value in changes.items()})
        return FeatureConfig.from_dict(data)

    def check_ids(self, known_ids: Iterable[str]) -> None:
        """Raise if an activation id is not among ``known_ids`` (a model's catalogue).

        Raises:
            UnknownActivationError: naming the id, the closest catalogue ids and the command
                that lists them.
        """
        from autosel.errors import unknown_activation

        known = list(known_ids)
        known_set = set(known)
        for index, activation in enumerate(self.activations):
            if activation.id not in known_set:
                raise unknown_activation(activation.id, known, self.model.name, where=f"activations[{index}].id: ")


def mask_password(url: str) -> str:
    """``url`` with its password hidden (see :func:`autosel.urls.mask_url`)."""
    from autosel.urls import mask_url

    return mask_url(url)
