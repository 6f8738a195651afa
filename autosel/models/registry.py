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
from autosel.models.families import family_of_config
from autosel.models.standin import denoiser_component
from autosel.models.twins import TWIN_DESCRIPTIONS

Source = Literal["builtin", "registry", "hub", "folder"]

TINY_FOLDER = Path(__file__).resolve().parent / "tiny_pipeline"
"""The committed weights of the embedded default model ``tiny`` (a diffusers folder)."""
TINY_DIT_FOLDER = Path(__file__).resolve().parent / "tiny_dit_pipeline"
"""The committed weights of ``tiny-dit``, an SD3-style transformer trained like ``tiny``."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


@dataclass(frozen=True)
class ModelSpec:
    """What a model reference points at.

    Attributes:
        name: the registry short name, or the reference exactly as given (hub id, folder).
        source: ``builtin`` (built in memory), ``registry``, ``hub`` or ``folder`` (``tiny`` is a
            folder that ships with the package).
        family: the family adapter's name (``sd``, ``sdxl``, ``if``, ``ddpm``, ``pixart``,
            ``hunyuan``, ``sd3``, ``flux``; see ``autosel.models.families``); ``None`` until the
            architecture is read for hub ids.
        hub_id: the Hugging Face repository id, when there is one.
        path: the local pipeline folder, for ``folder`` references.
        resolution: native image side in pixels, when known without reading files.
        architecture: name of the shipped offline architecture JSON (``models/configs``).
        description: one line for ``autosel models``.
    """

    name: str
    source: Source
    family: str | None = None
    hub_id: str | None = None
    path: Path | None = None
    resolution: int | None = None
    architecture: str | None = None
    description: str = ""


def _registered(name: str, hub_id: str, family: str, resolution: int, description: str, architecture: str | None = "") -> ModelSpec:
    return ModelSpec(
        name=name, source="registry", family=family, hub_id=hub_id, resolution=resolution,
        architecture=name if architecture == "" else architecture, description=description,
    )


def _twin(name: str, family: str, description: str) -> ModelSpec:
    return ModelSpec(name=name, source="builtin", family=family, resolution=64, description=description)


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
            name="tiny-dit",
            source="folder",
            family="sd3",
            path=TINY_DIT_FOLDER,
            resolution=64,
            description="SD3-style MMDiT (rectified flow) trained on the built-in shapes data (experiments/train_tiny_dit.py)",
        ),
        _twin("tiny-random", "sd", "SD-like UNet with seeded random weights, built from config (tests, control)"),
        _twin("tiny-dit-random", "sd3", "tiny-dit's transformer at its seeded initialisation (tiny's trained VAE), control"),
        _twin("tiny-xl-random", "sdxl", "SDXL-like UNet (text_time, two text encoders), seeded random weights"),
        _twin("tiny-pixart-random", "pixart", "PixArt-like DiT (AdaLN-single, cross-attention to a T5), random weights"),
        _twin("tiny-sd3-random", "sd3", "SD3-like MMDiT (three text encoders, rectified flow), random weights"),
        _twin("tiny-flux-random", "flux", "FLUX-like MMDiT (double + single-stream blocks, dynamic shift), random weights"),
        _twin("tiny-hunyuan-random", "hunyuan", "Hunyuan-DiT-like DiT (long skips, CLIP + T5 cross-attention), random weights"),
        _twin("tiny-if-random", "if", "DeepFloyd-IF-like pixel-space UNet on a T5, random weights"),
        _twin("tiny-ddpm-random", "ddpm", "unconditional pixel-space UNet2DModel (DDPM layout), random weights"),
        *(_twin(name, "generic", description) for name, description in TWIN_DESCRIPTIONS.items()),
        _registered("sd14", "CompVis/stable-diffusion-v1-4", "sd", 512, "Stable Diffusion 1.4"),
        _registered("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", "sd", 512, "Stable Diffusion 1.5"),
        _registered("sd20", "stabilityai/stable-diffusion-2-base", "sd", 512, "Stable Diffusion 2.0 base (512 px)"),
        _registered("sd21", "stabilityai/stable-diffusion-2-1-base", "sd", 512, "Stable Diffusion 2.1 base (512 px)"),
        _registered(
            "sd21-768", "stabilityai/stable-diffusion-2-1", "sd", 768,
            "Stable Diffusion 2.1 (768 px, v-prediction; DIFT's model)",
        ),
        _registered("sdxl", "stabilityai/stable-diffusion-xl-base-1.0", "sdxl", 1024, "Stable Diffusion XL base 1.0"),
        _registered("sdxl-turbo", "stabilityai/sdxl-turbo", "sdxl", 512, "SDXL-Turbo (adversarially distilled SDXL, 512 px)"),
        _registered("pgv2", "playgroundai/playground-v2-1024px-aesthetic", "sdxl", 1024, "Playground v2 (SDXL layout, 1024 px)"),
        _registered(
            "pgv25", "playgroundai/playground-v2.5-1024px-aesthetic", "sdxl", 1024,
            "Playground v2.5 (SDXL layout, EDM noise, VAE latents mean/std; 1024 px)",
        ),
        _registered(
            "if-i-l", "DeepFloyd/IF-I-L-v1.0", "if", 64,
            "DeepFloyd IF stage I, L (pixel space, 64 px, T5-XXL); no offline config: needs its cached files",
            architecture=None,
        ),
        _registered("pixart-alpha", "PixArt-alpha/PixArt-XL-2-512x512", "pixart", 512, "PixArt-α XL-2 (512 px, T5-XXL)"),
        _registered("pixart-sigma", "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS", "pixart", 1024, "PixArt-Σ XL-2 (1024 px, T5-XXL)"),
        _registered("hunyuan-dit", "Tencent-Hunyuan/HunyuanDiT-v1.2-Diffusers", "hunyuan", 1024, "Hunyuan-DiT v1.2 (1024 px)"),
        _registered("sd3-medium", "stabilityai/stable-diffusion-3-medium-diffusers", "sd3", 1024, "Stable Diffusion 3 Medium"),
        _registered("sd35-medium", "stabilityai/stable-diffusion-3.5-medium", "sd3", 1024, "Stable Diffusion 3.5 Medium (MMDiT-X)"),
        _registered("sd35-large", "stabilityai/stable-diffusion-3.5-large", "sd3", 1024, "Stable Diffusion 3.5 Large"),
        _registered("flux-dev", "black-forest-labs/FLUX.1-dev", "flux", 1024, "FLUX.1-dev (guidance-distilled)"),
        _registered("qwen-image", "Qwen/Qwen-Image", "generic", 1328, "Qwen-Image (20B MMDiT, Qwen2.5-VL-7B text), generic path"),
        _registered("z-image-turbo", "Tongyi-MAI/Z-Image-Turbo", "generic", 1024, "Z-Image-Turbo (6B single-stream DiT, Qwen3-4B text, 8 steps), generic path"),
        _registered("chroma", "lodestones/Chroma1-HD", "generic", 1024, "Chroma1-HD (8.9B, FLUX.1-schnell derived, T5-XXL only), generic path"),
        _registered("sana", "Efficient-Large-Model/Sana_1600M_1024px_diffusers", "generic", 1024, "Sana 1.6B (linear-attention DiT, DC-AE f32, Gemma-2 text), generic path"),
        _registered("cogview4", "THUDM/CogView4-6B", "generic", 1024, "CogView4-6B (GLM-4 text), generic path"),
        _registered("lumina2", "Alpha-VLLM/Lumina-Image-2.0", "generic", 1024, "Lumina-Image 2.0 (2.6B unified DiT, Gemma-2 text), generic path"),
        _registered("flux-schnell", "black-forest-labs/FLUX.1-schnell", "flux", 1024, "FLUX.1-schnell (timestep-distilled)"),
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
    if not index_file.is_file():
        raise NotAPipelineError(
            f"'{reference}' is not a diffusers pipeline folder: missing model_index.json "
            "(expected the layout written by DiffusionPipeline.save_pretrained)"
        )
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError) as error:
        raise NotAPipelineError(f"'{index_file}' is not valid JSON: {error}") from None
    component = denoiser_component(key for key, entry in index.items() if isinstance(entry, list))
    if component is None:
        found = sorted(k for k, v in index.items() if not k.startswith("_") and isinstance(v, list))
        raise NotAPipelineError(
            f"'{reference}' holds a {index.get('_class_name', 'pipeline')} with no unet or transformer "
            f"component (found: {', '.join(found) or 'none'}): autosel needs a diffusion denoiser"
        )
    config_file = path / component / "config.json"
    if not config_file.is_file():
        raise NotAPipelineError(f"'{reference}' is missing {component}/config.json (the denoiser's config)")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as error:
        raise NotAPipelineError(f"'{config_file}' is not valid JSON: {error}") from None
    family = family_of_config(config, f"model '{reference}'").name
    return ModelSpec(name=reference, source="folder", family=family, path=path.resolve())
