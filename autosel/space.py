"""Search spaces: which candidates, timesteps and proxy data a model's sweep and search use.

One YAML per model under ``search_spaces/`` (``search_spaces/<model>.yaml``); ``--space FILE``
takes any other. Unknown keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from autosel.config import ExtractionSection, FeatureConfig, ModelSection
from autosel.errors import AutoselError
from autosel.limits import MAX_TEXT_CHARS
from autosel.models import resolve_model
from autosel.models.architecture import load_architecture
from autosel.models.families import registered_families
from autosel.resources import spaces_folder
from autosel.schema import Section, check_sigma, check_timestep, read_yaml, validate
from autosel.tasks import get_task
from autosel.tasks.label_free import LABEL_FREE_TASK

SPACES_FOLDER = "search_spaces"
DEFAULT_TIMESTEPS = (10, 50, 150, 300, 500)


class CandidateSection(Section):
    """Catalogue ids to consider: those matching an ``include`` glob and no ``exclude`` glob."""

    include: list[str] = Field(default_factory=lambda: ["up-*"], min_length=1)
    exclude: list[str] = Field(default_factory=lambda: ["*-map"])
    post: list[Literal["none", "drop-massive"]] = Field(
        default_factory=lambda: ["none"], min_length=1,
        description="post-processing variants screened and searched per candidate (drop-massive: see autosel inspect)",
    )


class ProxySection(Section):
    """How much proxy data a candidate is scored on (``None``: the loader's default)."""

    pairs: int | None = Field(default=100, ge=1, description="correspondence: pairs (at most)")
    pairs_per_category: int | None = Field(default=None, ge=1, description="correspondence: balanced subset")
    train_images: int | None = Field(default=None, ge=1, description="segmentation: labelled images")
    test_images: int | None = Field(default=None, ge=1, description="segmentation: scored images")
    train_pairs: int | None = Field(default=None, ge=1, description="correspondence-trained: pairs the head learns from")
    shapes_size: int = Field(default=64, ge=16, description="side of generated shapes images")


class SearchSection(Section):
    """The combination search after the screen."""

    top_m: int = Field(default=12, ge=1, description="best screened candidates kept for the search")
    timesteps_per_candidate: int = Field(default=2, ge=1, description="best timesteps of each kept candidate")
    max_activations: int = Field(default=3, ge=1, description="activations per config, at most")
    channel_budget: int | None = Field(default=None, ge=1, description="total channels allowed in best.yaml")
    trials: int = Field(default=100, ge=1)
    cache_resolution: int = Field(default=32, ge=1, description="cached maps are at most this many cells per side")
    cache_dim: int | None = Field(default=256, ge=1, description="random projection of wider activations")
    confirm_top: int = Field(default=3, ge=1, description="configs re-run at full channels on held-out data")
    strategy: Literal["greedy-tpe", "tpe", "random", "greedy", "exhaustive"] = Field(
        default="greedy-tpe", description="greedy-tpe (greedy forward selection, then TPE), tpe, random, greedy or exhaustive"
    )
    confirm_task: str | None = Field(
        default=None, description="score the confirmations with this task (e.g. correspondence-trained); default: the search's"
    )
    confirm_dataset: str | None = Field(
        default=None, description="score the confirmations on this dataset (e.g. a few labelled pairs after a label-free "
        "search); default: the search's"
    )


class SearchSpace(Section):
    """A model's search space (see ``search_spaces/README.md``)."""

    model: str = Field(min_length=1)
    task: str = "correspondence"
    dataset: str = "shapes"
    image_size: int | tuple[int, int] | None = Field(
        default=None, description="extraction image size: N or [H, W] pixels; default native"
    )
    dtype: Literal["float32", "float16", "bfloat16"] | None = Field(
        default=None, description="denoiser dtype; default float32 on a CPU, bfloat16 (else float16) on CUDA"
    )
    prompt: str = Field(
        default="", max_length=MAX_TEXT_CHARS,
        description="the extraction prompt of every candidate; '{category}' is filled with each image's category",
    )
    timesteps: list[int] = Field(default_factory=lambda: list(DEFAULT_TIMESTEPS), min_length=1)
    sigmas: list[float] | None = Field(
        default=None, min_length=1,
        description="noise levels σ (0–1) instead of timesteps: each becomes the training timestep whose σ at the "
        "space's image size is nearest (the search keys its store and cache by integer t), when the model is loaded",
    )
    candidates: CandidateSection = Field(default_factory=CandidateSection)
    proxy: ProxySection = Field(default_factory=ProxySection)
    search: SearchSection = Field(default_factory=SearchSection)
    seed: int = 0
    allow_same_split: bool = Field(
        default=False, description="accept a dataset split pinned for both roles; scores are then labelled not held-out"
    )

    @model_validator(mode="before")
    @classmethod
    def _label_free_on_plain_images(cls, data: Any) -> Any:
        """Correspondence on ``images:PATH`` (no labels) is the label-free task."""
        if isinstance(data, dict) and is_plain_images(str(data.get("dataset", ""))) and data.get("task", "correspondence") == "correspondence":
            data = {**data, "task": LABEL_FREE_TASK}
        return data

    @field_validator("image_size")
    @classmethod
    def _positive_size(cls, value: int | tuple[int, int] | None) -> int | tuple[int, int] | None:
        sides = [value] if isinstance(value, int) else list(value or [])
        if any(side < 8 for side in sides):
            raise ValueError(f"image sides must be at least 8 pixels, got {value}")
        return value

    @field_validator("timesteps")
    @classmethod
    def _distinct_sorted(cls, values: list[int]) -> list[int]:
        return sorted({check_timestep(value) for value in values})

    @field_validator("sigmas")
    @classmethod
    def _fractions(cls, values: list[float] | None) -> list[float] | None:
        return None if values is None else sorted({float(check_sigma(value)) for value in values})

    @model_validator(mode="after")
    def _one_grid(self) -> SearchSpace:
        if self.sigmas is not None and "timesteps" in self.model_fields_set:
            raise ValueError("timesteps and sigmas are both given: give one grid (timesteps 0…999 or sigmas 0–1)")
        return self

    def with_timesteps(self, timesteps: list[int]) -> SearchSpace:
        """This space on the grid ``timesteps`` (its ``sigmas``, if any, resolved to them)."""
        data = self.model_dump(exclude={"sigmas"})
        return SearchSpace.from_dict({**data, "timesteps": list(timesteps)})

    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        """Load and validate a space file (safe YAML).

        Raises:
            ConfigError: missing file, invalid YAML, unknown key or invalid value (one line).
        """
        data = read_yaml(path, "search space")
        return cls.from_dict(data or {}, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "search space") -> SearchSpace:
        """Validate ``data``; errors name ``source``, the field path and what is valid."""
        return validate(cls, data, source)

    def replace(self, **changes: Any) -> SearchSpace:
        """A validated copy with top-level fields replaced (``None`` values are ignored)."""
        data = self.model_dump()
        if self.sigmas is not None:  # the grid is the sigmas, unless new timesteps replace it
            data.pop("sigmas" if changes.get("timesteps") is not None else "timesteps")
        data.update({k: v for k, v in changes.items() if v is not None})
        return SearchSpace.from_dict(data)

    def model_section(self) -> ModelSection:
        """The model section of every feature config this space's search writes."""
        return ModelSection(name=self.model, dtype=self.dtype or "float32")

    def extraction_section(self) -> ExtractionSection:
        """The extraction section of every feature config this space's search writes (its image
        size and prompt; the other settings at their defaults)."""
        return ExtractionSection(image_size=self.image_size, prompt=self.prompt)

    def feature_config(self, activations: Sequence[Mapping[str, Any]]) -> FeatureConfig:
        """A feature config of ``activations`` (``{"id", "timestep", …}`` each) with this space's
        model and extraction sections."""
        return FeatureConfig(model=self.model_section(), extraction=self.extraction_section(),
                             activations=[dict(activation) for activation in activations])

    def confirmation(self) -> tuple[str, str]:
        """(task, dataset) the confirmations are scored with: ``search.confirm_task`` and
        ``search.confirm_dataset``, else the search's own; a label-free search confirmed on a
        labelled dataset is scored with (labelled) ``correspondence`` there."""
        dataset = self.search.confirm_dataset or self.dataset
        if self.search.confirm_task is not None:
            return self.search.confirm_task, dataset
        if self.task == LABEL_FREE_TASK and self.search.confirm_dataset is not None and not is_plain_images(dataset):
            return "correspondence", dataset
        return self.task, dataset

    def task_options(self, task: str | None = None) -> dict[str, Any]:
        """Keyword options for :func:`autosel.tasks.make_task` from the proxy section (for the
        space's task, or ``task``: e.g. the confirmation's)."""
        return {name: getattr(self.proxy, name) for name in get_task(task or self.task).proxy_options}


def is_plain_images(dataset: str) -> bool:
    """True for an ``images:PATH`` dataset spec (a folder of images without labels)."""
    return dataset.startswith("images:")


def space_file(model: str) -> Path | None:
    """``search_spaces/<model>.yaml`` in the working directory, else the one the package ships, if any."""
    if "/" in model or "\\" in model or Path(model).exists():
        return None  # hub ids and folders have no space file of their own
    name = f"{model}.yaml"
    for folder in (Path.cwd() / SPACES_FOLDER, spaces_folder()):
        if (folder / name).is_file():
            return folder / name
    return None


def same_model(first: str, second: str) -> bool:
    """True when two ``--model`` spellings name the same model (folders by resolved path:
    ``./pipe``, ``pipe/`` and ``/abs/pipe`` are one model)."""
    if first == second:
        return True
    a, b = Path(first).expanduser(), Path(second).expanduser()
    return a.exists() and b.exists() and a.resolve() == b.resolve()


def canonical_model(model: str) -> str:
    """A model reference as stores and caches key it: a folder by its resolved path, any other
    reference (registry name, hub id) as written."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model


def load_space(model: str, path: str | Path | None = None) -> SearchSpace:
    """The search space for ``model``: ``path`` if given, else the model's own file, else the
    generic default of its family (see :func:`default_candidates`; no attention maps,
    t ∈ {10, 50, 150, 300, 500})."""
    if path is not None:
        return SearchSpace.from_yaml(path)
    found = space_file(model)
    if found:
        return SearchSpace.from_yaml(found)
    return SearchSpace(model=model, candidates=default_candidates(model))


def default_candidates(model: str) -> CandidateSection:
    """The default candidates of a model without a space file: the up stage of UNets (as the
    seed codebase found best), every transformer block of diffusion transformers (less what
    their family leaves out by default: PixArt's attention maps), each also with ``post:
    drop-massive`` (massive activations; DiTF)."""
    try:
        spec = resolve_model(model)
        family = registered_families().get(spec.family or "") or type(load_architecture(spec))
    except AutoselError:  # unknown here (e.g. a hub id not cached): loading the model says why, later
        family = None
    if family is not None and family.component == "transformer":
        return CandidateSection(include=["vit-block*"], exclude=list(family.default_exclude), post=["none", "drop-massive"])
    return CandidateSection()
