"""Model references: registry short names, hub ids and local diffusers folders.

``resolve_model`` turns whatever a user passed as ``--model`` into a :class:`ModelSpec`
without loading anything; architecture and weights are read later, on demand.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from autosel.errors import NotAPipelineError, UnknownModelError, did_you_mean

Source = Literal["builtin", "registry", "hub", "folder"]

TINY_FOLDER = Path(__file__).resolve().parent / "tiny_pipeline"
"""The committed weights of the embedded default model ``tiny`` (a diffusers folder)."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


@dataclass(frozen=True)
class ModelSpec:
    """What a model reference points at.

    Attributes:
        name: the registry short name, or the reference exactly as given (hub id, folder).
        source: ``builtin`` (built in memory), ``registry``, ``hub`` or ``folder`` (``tiny`` is a
            folder that ships with the package).
        family: ``sd`` (SD 1.x/2.x-style UNet) or ``sdxl`` (text_time conditioning); ``None``
            until the architecture is read for hub ids and folders.
        hub_id: the Hugging Face repository id, when there is one.
        path: the local pipeline folder, for ``folder`` references.
        resolution: native image side in pixels, when known without reading files.
        prompt: the default prompt used for feature extraction.
        architecture: name of the shipped offline architecture JSON (``models/configs``).
        description: one line for ``autosel models``.
    """

    name: str
    source: Source
    family: str | None = None
    hub_id: str | None = None
    path: Path | None = None
    resolution: int | None = None
    prompt: str = ""
    architecture: str | None = None
    description: str = ""


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="tiny",
            source="folder",
            family="sd",
            path=TINY_FOLDER,
            resolution=64,
            description="embedded default: SD layout trained on the built-in shapes data (experiments/train_tiny_model.py)",
        ),
        ModelSpec(
            name="tiny-random",
            source="builtin",
            family="sd",
            resolution=64,
            description="SD-like UNet with seeded random weights, built from config (tests, control)",
        ),
        ModelSpec(
            name="tiny-xl-random",
            source="builtin",
            family="sdxl",
            resolution=64,
            description="SDXL-like UNet (text_time, two text encoders), seeded random weights",
        ),
        ModelSpec(
            name="sd15",
            source="registry",
            family="sd",
            hub_id="stable-diffusion-v1-5/stable-diffusion-v1-5",
            resolution=512,
            architecture="sd15",
            description="Stable Diffusion 1.5",
        ),
        ModelSpec(
            name="sd21",
            source="registry",
            family="sd",
            hub_id="stabilityai/stable-diffusion-2-1-base",
            resolution=512,
            architecture="sd21",
            description="Stable Diffusion 2.1 base (512 px)",
        ),
        ModelSpec(
            name="sdxl",
            source="registry",
            family="sdxl",
            hub_id="stabilityai/stable-diffusion-xl-base-1.0",
            resolution=1024,
            architecture="sdxl",
            description="Stable Diffusion XL base 1.0",
        ),
        ModelSpec(
            name="sdxl-turbo",
            source="registry",
            family="sdxl",
            hub_id="stabilityai/sdxl-turbo",
            resolution=512,
            architecture="sdxl-turbo",
            description="SDXL-Turbo (adversarially distilled SDXL, 512 px)",
        ),
    ]
}


def resolve_model(reference: str) -> ModelSpec:
    """Resolve a ``--model`` value to a :class:`ModelSpec`, reading no weights.

    Args:
        reference: a registry short name (``autosel models``), a hub id ``owner/name``, or
            the path of a local diffusers pipeline folder (one with ``model_index.json``).

    Returns:
        The spec; for hub ids ``family`` is ``None`` until the architecture is read.

    Raises:
        NotAPipelineError: the path exists (or looks like a path) but holds no pipeline.
        UnknownModelError: none of the above; the message lists the known names.

    Example:
        >>> resolve_model("sdxl").hub_id
        'stabilityai/stable-diffusion-xl-base-1.0'
    """
    if reference in REGISTRY:
        spec = REGISTRY[reference]
        if spec.source == "folder" and spec.path is not None:
            _folder_spec(str(spec.path), spec.path)  # a missing or broken folder fails here, by name
        return spec
    path = Path(reference).expanduser()
    if path.is_dir():
        return _folder_spec(reference, path)
    if path.exists() or reference.startswith((".", "/", "~")):
        raise NotAPipelineError(
            f"model path '{reference}' is not a folder: expected a diffusers pipeline folder "
            "holding model_index.json and unet/config.json"
        )
    if _HUB_ID.match(reference):
        return ModelSpec(name=reference, source="hub", hub_id=reference)
    raise UnknownModelError(
        f"unknown model '{reference}'.{did_you_mean(reference, REGISTRY)} "
        f"Known names: {', '.join(REGISTRY)}; also accepted: a hub id (owner/name) or a local "
        "diffusers pipeline folder."
    )


def _folder_spec(reference: str, path: Path) -> ModelSpec:
    index_file = path / "model_index.json"
    unet_config = path / "unet" / "config.json"
    missing = [str(p.relative_to(path)) for p in (index_file, unet_config) if not p.is_file()]
    if missing:
        raise NotAPipelineError(
            f"'{reference}' is not a diffusers pipeline folder: missing {', '.join(missing)} "
            "(expected the layout written by DiffusionPipeline.save_pretrained)"
        )
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError) as error:
        raise NotAPipelineError(f"'{index_file}' is not valid JSON: {error}") from None
    pipeline_class = str(index.get("_class_name", ""))
    family = "sdxl" if "XL" in pipeline_class else "sd"
    return ModelSpec(name=reference, source="folder", family=family, path=path.resolve())
