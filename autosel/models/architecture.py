"""Denoiser architectures without weights: what the catalogue needs to know about a model.

Registry models ship their denoiser config as JSON (``models/configs``) so that the catalogue
works offline; hub ids and local folders use the checkpoint's own ``unet/config.json`` or
``transformer/config.json``. A denoiser built here lives on the meta device: it has shapes,
never weights. The family (UNet, PixArt, SD3, FLUX, …) is read from the config's class.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from autosel.errors import InvalidInputError, NotAPipelineError, UnsupportedModelError, WeightsUnavailableError
from autosel.models.registry import ModelSpec

ImageSize = int | tuple[int, int]


@dataclass(frozen=True)
class Architecture:
    """Shapes of a diffusion model's denoiser, independent of its weights.

    Attributes:
        denoiser_config: the denoiser's config (as in ``unet/config.json`` or
            ``transformer/config.json``, ``_class_name`` included).
        family: the family adapter's name (see :data:`autosel.models.families.FAMILIES`).
        text_len: text tokens per prompt (for the catalogue's dummy conditioning).
        vae_scale_factor: image pixels per latent pixel along each side (1 in pixel space).
        latent_channels: channels of the VAE latent (of the pixels in pixel space).
        native_size: the native image side in pixels when the config does not say it (FLUX's
            has no ``sample_size``); default: ``sample_size`` × ``vae_scale_factor``.
        source: where the config came from (shipped file, cache path, folder), for messages.
        calls: for the generic family, a function returning a pipeline whose ``__call__`` the
            catalogue records the denoiser's call from (the loaded one, a twin, or a stand-in
            built from configs with the denoiser on the meta device).
    """

    denoiser_config: Mapping[str, Any]
    family: str = "sd"
    text_len: int = 77
    vae_scale_factor: int = 8
    latent_channels: int = 4
    native_size: int | None = None
    source: str = field(default="", compare=False)
    calls: Callable[[], Any] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_config(cls, denoiser_config: Mapping[str, Any], source: str = "", **fields: Any) -> Architecture:
        """An architecture whose family is read from ``denoiser_config`` (see ``family_of_config``)."""
        from autosel.models.families import family_of_config

        family = family_of_config(denoiser_config, source or "model")
        fields.setdefault("text_len", family.text_len)
        if family.pixel_space:
            fields.update(vae_scale_factor=1, latent_channels=int(denoiser_config.get("in_channels", 3)))
        return cls(dict(denoiser_config), family.name, source=source, **fields)

    @classmethod
    def from_pipeline(cls, pipeline) -> Architecture:
        """The architecture of a loaded pipeline, read from its components' own configs."""
        component = "transformer" if getattr(pipeline, "transformer", None) is not None else "unet"
        denoiser = getattr(pipeline, component)
        config = dict(denoiser.config)
        config["_class_name"] = type(denoiser).__name__
        fields: dict[str, Any] = {}
        text_len = _pipeline_text_len(pipeline)
        if text_len is not None:
            fields["text_len"] = text_len
        vae = getattr(pipeline, "vae", None)
        if vae is not None and "block_out_channels" in vae.config:  # other VAEs: the generic path reads the pipeline
            fields["vae_scale_factor"] = 2 ** (len(vae.config.block_out_channels) - 1)
            fields["latent_channels"] = int(vae.config.latent_channels)
        architecture = cls.from_config(config, source=f"loaded {type(pipeline).__name__}", **fields)
        if architecture.family == "generic":
            return with_pipeline_calls(architecture, lambda: pipeline)
        return architecture

    @property
    def unet_config(self) -> Mapping[str, Any]:
        """The denoiser's config (the name predates transformer families)."""
        return self.denoiser_config

    @property
    def adapter(self):
        """The family adapter (:class:`autosel.models.families.Family`)."""
        from autosel.models.families import FAMILIES

        return FAMILIES[self.family]

    def dummy_inputs(self, sample: torch.Tensor, timestep: torch.Tensor) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Arguments of a shape-only forward on ``sample`` (meta tensors) at the sample's size."""
        latent_hw = tuple(sample.shape[-2:])
        image_hw = (latent_hw[0] * self.vae_scale_factor, latent_hw[1] * self.vae_scale_factor)
        conditioning = self.adapter.dummy_conditioning(self, len(sample), image_hw=image_hw)
        with torch.device("meta"):
            return self.adapter.inputs(self, sample, timestep, conditioning)

    @property
    def native_resolution(self) -> int:
        """The image side the model was trained at, in pixels."""
        if self.native_size is not None:
            return self.native_size
        return int(self.denoiser_config.get("sample_size") or self.adapter.default_sample_size) * self.vae_scale_factor

    def latent_size(self, image_size: ImageSize | None = None) -> tuple[int, int]:
        """Latent (height, width) for an image of ``image_size`` pixels (int: square).

        Raises:
            InvalidInputError: a side is not a positive multiple of the model's pixel step
                (the VAE scale factor times the transformer's patch size).
        """
        height, width = _as_hw(image_size if image_size is not None else self.native_resolution)
        step = self.pixel_step
        for side in (height, width):
            if side <= 0 or side % step:
                what = "the VAE scale factor" if step == self.vae_scale_factor else "the VAE scale factor × patch size"
                raise InvalidInputError(
                    f"image size {height}x{width} is not valid: each side must be a positive "
                    f"multiple of {step} ({what})"
                )
        return height // self.vae_scale_factor, width // self.vae_scale_factor

    @property
    def pixel_step(self) -> int:
        """Image sides must be multiples of this: one token (or latent pixel) per step."""
        grid = self.adapter.token_grid(self, (64, 64))
        patch = 64 // grid[0] if grid else 1
        return self.vae_scale_factor * patch

    def build_denoiser(self, device: str | torch.device = "meta") -> torch.nn.Module:
        """Instantiate the denoiser from config (random or no weights; meta device by default)."""
        return self.adapter.build(self, device)

    def build_unet(self, device: str | torch.device = "meta") -> torch.nn.Module:
        """:meth:`build_denoiser` under its older name."""
        return self.build_denoiser(device)

    def dummy_conditioning(
        self, batch_size: int, device: str | torch.device = "meta", dtype: torch.dtype = torch.float32
    ) -> dict[str, Any]:
        """Zero-valued conditioning with the right shapes for one denoiser call."""
        return self.adapter.dummy_conditioning(self, batch_size, device, dtype)


def with_pipeline_calls(architecture: Architecture, pipeline: Callable[[], Any]) -> Architecture:
    """``architecture`` recording its calls from ``pipeline()``, with the VAE scale factor and
    latent channels read off that pipeline (``vae_scale_factor``, the recorded latent)."""
    from dataclasses import replace

    from autosel.models.families.generic import recorder_for

    built = pipeline()
    recorder = recorder_for(built)
    factor = recorder.vae_scale_factor
    side = 16 * factor
    native_size = architecture.native_size
    default_sample_size = getattr(built, "default_sample_size", None)
    if native_size is None and "sample_size" not in architecture.denoiser_config and isinstance(default_sample_size, int):
        native_size = default_sample_size * factor  # the pipeline's own default height and width
    return replace(
        architecture, calls=pipeline, vae_scale_factor=factor, latent_channels=recorder.latent_channels((side, side)),
        native_size=native_size,
    )


_STANDINS: dict[str, Any] = {}


def _standin(spec_key: str, spec: Any) -> Any:
    """One stand-in per pipeline description in this process (building one takes seconds)."""
    if spec_key not in _STANDINS:
        from autosel.models.standin import standin_pipeline

        _STANDINS[spec_key] = standin_pipeline(spec)
    return _STANDINS[spec_key]


def generic_architecture(spec: Any, source: str, native_size: int | None = None) -> Architecture:
    """The architecture of a generic-path pipeline described by ``spec`` (a
    :class:`autosel.models.standin.PipelineSpec`), recording its calls from a stand-in built
    from the configs alone (denoiser and VAE on the meta device: no weights read or made)."""
    name, component = spec.denoiser
    config = {**component.config, "_class_name": component.class_name}
    architecture = Architecture.from_config(config, source=source, native_size=native_size)
    key = json.dumps([spec.pipeline_class, {k: [c.class_name, c.config] for k, c in spec.components.items()}],
                     sort_keys=True, default=str)
    return with_pipeline_calls(architecture, lambda: _standin(key, spec))


def _pipeline_text_len(pipeline) -> int | None:
    name = type(pipeline).__name__
    if "PixArtSigma" in name:
        return 300
    if "PixArt" in name:
        return 120
    if name.startswith(("StableDiffusion3", "Flux", "HunyuanDiT")):
        return None  # the family's default (the pipeline's own default sequence length)
    encoder = getattr(pipeline, "text_encoder", None)
    length = getattr(getattr(encoder, "config", None), "max_position_embeddings", None)
    return int(length) if length else None


def load_architecture(spec: ModelSpec) -> Architecture:
    """The architecture of a resolved model, reading no weights.

    Registry models use the checkpoint's config when it is in the local Hugging Face cache and
    the shipped copy otherwise; hub ids download the denoiser's config (honouring
    ``HF_HUB_OFFLINE``); folders read their own files; built-in models build their config.

    Raises:
        WeightsUnavailableError: a hub id whose config is neither cached nor downloadable.
        UnsupportedModelError: the denoiser is of a family autosel does not support.
    """
    if spec.source == "builtin":
        from autosel.models.tiny import tiny_architecture

        return tiny_architecture(spec.name)
    if spec.source == "folder":
        folder = Path(spec.path or spec.name)
        architecture = _architecture_from_files(
            spec.name, lambda name: folder / name if (folder / name).is_file() else None
        )
        return _with_standin(architecture, spec.name, lambda name: folder / name if (folder / name).is_file() else None)
    if spec.source == "registry":
        if _cached_file(spec.hub_id, "model_index.json") is not None:
            locate = functools.partial(_cached_file, spec.hub_id)
            return _with_standin(_architecture_from_files(spec.name, locate), spec.name, locate)
        if spec.architecture is None:
            raise weights_unavailable(spec.hub_id)
        return shipped_architecture(spec.architecture)
    locate = functools.partial(_hub_file, spec.hub_id)
    return _with_standin(_architecture_from_files(spec.name, locate), spec.name, locate)


def _with_standin(architecture: Architecture, name: str, locate) -> Architecture:
    """A generic-path ``architecture`` records its calls from a stand-in of its pipeline's
    configs (the weights, tens of GB for a real model, are never read for a catalogue)."""
    if architecture.family != "generic":
        return architecture
    from autosel.models.standin import spec_from_files

    return generic_architecture(spec_from_files(locate, name), architecture.source, architecture.native_size)


def shipped_architecture(name: str) -> Architecture:
    """The offline architecture shipped with autosel for registry model ``name``."""
    text = resources.files("autosel.models").joinpath("configs", f"{name}.json").read_text()
    document = json.loads(text)
    source = f"shipped config {name}.json ({document.get('source', '')})"
    if "pipeline" in document:  # a whole pipeline's configs: the generic path's stand-in
        from autosel.models.standin import spec_from_document

        return generic_architecture(spec_from_document(document), source, document.get("native_size"))
    denoiser = document.get("denoiser", document.get("unet"))
    fields: dict[str, Any] = {}
    text_section = document.get("text_encoder", {})
    if "text_len" in text_section or "max_position_embeddings" in text_section:
        fields["text_len"] = int(text_section.get("text_len", text_section.get("max_position_embeddings")))
    if "vae" in document:
        fields.update(
            vae_scale_factor=int(document["vae"]["scale_factor"]), latent_channels=int(document["vae"]["latent_channels"])
        )
    return Architecture.from_config(denoiser, source=source, **fields)


def _architecture_from_files(name: str, locate) -> Architecture:
    index_file = locate("model_index.json")
    index = _read_json(index_file) if index_file is not None else {}
    component = "transformer" if "transformer" in index else "unet"
    config_file = locate(f"{component}/config.json")
    if config_file is None:
        raise NotAPipelineError(f"model '{name}' has no {component}/config.json (the denoiser's config)")
    config = _read_json(config_file)
    config.setdefault("_class_name", "UNet2DConditionModel" if component == "unet" else "Transformer2DModel")
    fields: dict[str, Any] = {}
    pipeline_class = str(index.get("_class_name", ""))
    if "PixArtSigma" in pipeline_class:
        fields["text_len"] = 300
    elif "PixArt" in pipeline_class:
        fields["text_len"] = 120
    elif component == "unet" and "IF" not in pipeline_class:
        text_file = locate("text_encoder/config.json")
        if text_file is not None:
            fields["text_len"] = int(_read_json(text_file).get("max_position_embeddings", 77))
    vae_file = locate("vae/config.json") if "vae" in index or not index else None
    if vae_file is not None:
        vae_config = _read_json(vae_file)
        fields["vae_scale_factor"] = 2 ** (len(vae_config.get("block_out_channels", [0] * 4)) - 1)
        fields["latent_channels"] = int(vae_config.get("latent_channels", config.get("in_channels", 4)))
    return Architecture.from_config(config, source=str(config_file), **fields)


def _read_json(path: str | os.PathLike) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise UnsupportedModelError(f"cannot read model config '{path}': {error}") from None


def _cached_file(hub_id: str | None, filename: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(hub_id, filename) if hub_id else None
    return found if isinstance(found, str) else None


def _hub_file(hub_id: str | None, filename: str) -> str | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return hf_hub_download(hub_id, filename)
    except LocalEntryNotFoundError:
        raise weights_unavailable(hub_id) from None
    except EntryNotFoundError:
        return None  # the repository exists but has no such file
    except RepositoryNotFoundError:
        raise WeightsUnavailableError(
            f"no repository '{hub_id}' on the Hugging Face hub (or it is private or gated): "
            "check the id, log in with `hf auth login`, or pass a local diffusers pipeline folder"
        ) from None
    except (HfHubHTTPError, OSError):
        raise weights_unavailable(hub_id) from None


def weights_unavailable(hub_id: str | None) -> WeightsUnavailableError:
    """The one message for model files that cannot be had here, naming both ways out."""
    offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") else ""
    return WeightsUnavailableError(
        f"model files for '{hub_id}' are not in the local Hugging Face cache and cannot be "
        f"downloaded here{offline}. Either download them on a connected machine with "
        f"`hf download {hub_id}` and copy the cache (HF_HOME) here, or pass a local diffusers "
        "pipeline folder: --model /path/to/pipeline"
    )


def _as_hw(image_size: ImageSize) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    height, width = image_size
    return int(height), int(width)
