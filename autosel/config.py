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

from autosel.atomic import write_text
from autosel.errors import unknown_activation
from autosel.limits import MAX_TEXT_CHARS
from autosel.resources import config_path
from autosel.schema import (
    NUM_TRAIN_TIMESTEPS,
    ConfigError,
    Level,
    Section,
    Sigma,
    check_sigma,
    check_timestep,
    level_key,
    read_yaml,
    validate,
)
from autosel.urls import mask_url

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
    prompt: str = Field(
        default="", max_length=MAX_TEXT_CHARS,
        description="text prompt, encoded once per distinct prompt; '{category}' is filled with each image's category "
        "(the dataset's, the image's folder name, or --category), as DIFT's 'a photo of a {category}'",
    )
    noise_seed: int = Field(default=0, ge=0, description="seed of the noise added to the latents")
    ensemble: int = Field(default=1, ge=1, le=64, description="noise draws averaged per image")
    vae_posterior: Literal["mean", "sample"] = Field(
        default="mean",
        description="VAE latent: the posterior mean, or a sample drawn per ensemble member, seeded from noise_seed "
        "(as DIFT and gdf do)",
    )
    resize_filter: Literal["bilinear", "bicubic"] = Field(
        default="bilinear",
        description="resize filter: bilinear with antialias on float pixels, or PIL's bicubic on 8-bit pixels "
        "(rounded to 8 bit, as DIFT and gdf resize)",
    )

    def identity(self) -> dict[str, Any]:
        """The settings as plain data for cache and sweep keys, leaving out ``vae_posterior`` and
        ``resize_filter`` at their defaults: keys made before those settings existed still match."""
        data = self.model_dump(mode="json")
        for name in ("vae_posterior", "resize_filter"):
            if data[name] == type(self).model_fields[name].default:
                del data[name]
        return data


class NoiseLevelRecord(Section):
    """What an activation's noise level meant for the config's model and image size: both t
    and σ, written by autosel beside the one the config gives (informational: reading a
    config ignores it; ``timestep:`` or ``sigma:`` decides)."""

    t: float = Field(description="timestep on the 0…999 scale (a fraction where σ was given to a flow model)")
    sigma: float = Field(description="σ, the noise fraction of the denoiser's input")


class Activation(Section):
    """One activation at one noise level: a timestep t, or σ directly."""

    id: str = Field(min_length=1, description="activation id (see `autosel catalog`)")
    timestep: int | None = Field(default=None, description="diffusion timestep, 0…999 (0 = clean); or give sigma")
    sigma: float | None = Field(
        default=None,
        description="noise level σ, 0–1, instead of timestep (rectified flow: used as is, no scheduler shift; "
        "DDPM: the timestep whose √(1 − ᾱ_t) is nearest)",
    )
    weight: float = Field(default=1.0, gt=0, description="weight in the aggregated map")
    post: Literal["none", "l2", "drop-massive"] = Field(
        default="none",
        description="post-processing: none, l2 over channels, or drop-massive (zero the channels whose mean "
        "|value| over the batch's image tokens exceeds 100x the median channel's; see autosel inspect)",
    )

    discard_channels: list[int] | None = Field(
        default=None,
        description="norm-in ids only: DiTF's channel discard — these channels of the block's input (averaged over "
        "the ensemble) are zeroed before the block's LayerNorm and AdaLN modulation (see autosel.adaln)",
    )
    noise_level: NoiseLevelRecord | None = Field(
        default=None, description="written by autosel: t and σ for this model and image size (ignored when read)"
    )

    @property
    def level(self) -> Level:
        """The noise level: the timestep, or a :class:`~autosel.schema.Sigma`."""
        return self.timestep if self.timestep is not None else Sigma(self.sigma)

    @property
    def label(self) -> str:
        """``id@t`` (``id@σ0.26``), or ``id:post@t`` when post-processed (the search's candidate spelling)."""
        post = "" if self.post == "none" else f":{self.post}"
        return f"{self.id}{post}@{self.level}"

    @field_validator("timestep")
    @classmethod
    def _on_the_schedule(cls, value: int | None) -> int | None:
        return value if value is None else check_timestep(value)

    @field_validator("sigma")
    @classmethod
    def _a_fraction(cls, value: float | None) -> float | None:
        return value if value is None else float(check_sigma(value))

    @model_validator(mode="after")
    def _one_level(self) -> Activation:
        if self.timestep is not None and self.sigma is not None:
            raise ValueError(f"'{self.id}' gives both timestep and sigma: give one (timestep 0…999 or sigma 0–1)")
        if self.timestep is None and self.sigma is None:
            raise ValueError(f"'{self.id}' gives no noise level: add timestep (0…999) or sigma (0–1)")
        if self.discard_channels is not None:
            if not self.id.endswith("-norm-in"):
                raise ValueError(f"discard_channels is for norm-in ids (the AdaLN-modulated input), not '{self.id}'")
            if not self.discard_channels or min(self.discard_channels) < 0:
                raise ValueError(f"discard_channels of '{self.id}' must list channel indices ≥ 0, got {self.discard_channels}")
        return self


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
        seen: set[tuple[str, Level]] = set()
        for activation in self.activations:
            if (activation.id, activation.level) in seen:
                raise ValueError(
                    f"activation '{activation.id}' is listed twice at noise level {activation.level}; an id may "
                    "appear once per timestep (or sigma)"
                )
            seen.add((activation.id, activation.level))
        return self

    @property
    def ids(self) -> list[str]:
        """Activation ids, in the order listed (an id taken at several timesteps once per timestep)."""
        return [activation.id for activation in self.activations]

    @property
    def keys(self) -> list[str]:
        """The extractor's output key of each activation, in the order listed: the id, or
        ``id@t`` (``id@σ0.26``) for an id the config takes at several noise levels."""
        counts: dict[str, int] = {}
        for activation in self.activations:
            counts[activation.id] = counts.get(activation.id, 0) + 1
        return [a.id if counts[a.id] == 1 else f"{a.id}@{a.level}" for a in self.activations]

    @property
    def timesteps(self) -> list[Level]:
        """Distinct noise levels (timesteps ascending, then σ values): one denoiser forward each."""
        return sorted({activation.level for activation in self.activations}, key=level_key)

    def with_noise_levels(self, levels: Mapping[Level, tuple[float, float]]) -> FeatureConfig:
        """This config with each activation's ``noise_level`` record filled in from ``levels``
        (``{level: (t, σ)}`` for the config's model and image size; see
        :meth:`autosel.denoiser.DenoiserRun.noise_level`); activations whose level is missing
        keep their record."""
        activations = []
        for activation in self.activations:
            data = activation.model_dump(mode="json", exclude_none=True)
            if activation.level in levels:
                t, sigma = levels[activation.level]
                data["noise_level"] = {"t": round(float(t), 2), "sigma": round(float(sigma), 4)}
            activations.append(data)
        return self.replace(activations=activations)

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
            write_text(path, text)  # whole or not at all: a full disk keeps the previous file
        return text

    @classmethod
    def from_yaml(cls, path: str | Path) -> FeatureConfig:
        """Load and validate a YAML file (``yaml.safe_load``: no objects are constructed), or the
        shipped preset of that name (``"meng-practical-sdxl"``, see ``autosel presets``).

        Raises:
            ConfigError: missing or unreadable file, invalid YAML, or invalid content.
        """
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
        known = list(known_ids)
        known_set = set(known)
        for index, activation in enumerate(self.activations):
            if activation.id not in known_set:
                raise unknown_activation(activation.id, known, self.model.name, where=f"activations[{index}].id: ")


def mask_password(url: str) -> str:
    """``url`` with its password hidden (see :func:`autosel.urls.mask_url`)."""
    return mask_url(url)
