"""Denoiser architectures without weights: what the catalogue needs to know about a model.

Registry models ship their UNet config as JSON (``models/configs``) so that the catalogue
works offline; hub ids and local folders use the checkpoint's own ``unet/config.json``.
A UNet built here lives on the meta device: it has shapes, never weights.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from autosel.errors import InvalidInputError, UnsupportedModelError, WeightsUnavailableError
from autosel.models.registry import ModelSpec

ImageSize = int | tuple[int, int]


@dataclass(frozen=True)
class Architecture:
    """Shapes of a latent-diffusion UNet model, independent of its weights.

    Attributes:
        unet_config: the ``UNet2DConditionModel`` config (as in ``unet/config.json``).
        text_len: text tokens per prompt (the text encoder's ``max_position_embeddings``).
        vae_scale_factor: image pixels per latent pixel along each side.
        latent_channels: channels of the VAE latent.
        source: where the config came from (shipped file, cache path, folder), for messages.
    """

    unet_config: Mapping[str, Any]
    text_len: int = 77
    vae_scale_factor: int = 8
    latent_channels: int = 4
    source: str = field(default="", compare=False)

    @classmethod
    def from_pipeline(cls, pipeline) -> Architecture:
        """The architecture of a loaded pipeline, read from its components' own configs."""
        unet_config = dict(pipeline.unet.config)
        text_encoder = getattr(pipeline, "text_encoder", None)
        text_len = int(getattr(getattr(text_encoder, "config", None), "max_position_embeddings", 77))
        vae = pipeline.vae
        return cls(
            unet_config=unet_config,
            text_len=text_len,
            vae_scale_factor=2 ** (len(vae.config.block_out_channels) - 1),
            latent_channels=int(vae.config.latent_channels),
            source=f"loaded {type(pipeline).__name__}",
        )

    @property
    def family(self) -> str:
        """``sdxl`` for text_time-conditioned UNets, ``sd`` otherwise."""
        return "sdxl" if self.unet_config.get("addition_embed_type") == "text_time" else "sd"

    @property
    def native_resolution(self) -> int:
        """The image side the model was trained at, in pixels."""
        return int(self.unet_config.get("sample_size", 64)) * self.vae_scale_factor

    def latent_size(self, image_size: ImageSize | None = None) -> tuple[int, int]:
        """Latent (height, width) for an image of ``image_size`` pixels (int: square).

        Raises:
            InvalidInputError: a side is not a positive multiple of the VAE scale factor.
        """
        height, width = _as_hw(image_size if image_size is not None else self.native_resolution)
        for side in (height, width):
            if side <= 0 or side % self.vae_scale_factor:
                raise InvalidInputError(
                    f"image size {height}x{width} is not valid: each side must be a positive "
                    f"multiple of {self.vae_scale_factor} (the VAE scale factor)"
                )
        return height // self.vae_scale_factor, width // self.vae_scale_factor

    def build_unet(self, device: str | torch.device = "meta") -> torch.nn.Module:
        """Instantiate the UNet from config (random or no weights; meta device by default)."""
        from diffusers import UNet2DConditionModel

        config = {k: v for k, v in self.unet_config.items() if not k.startswith("_")}
        with torch.device(device):
            unet = UNet2DConditionModel.from_config(config)
        return unet.eval()

    def dummy_conditioning(
        self, batch_size: int, device: str | torch.device = "meta", dtype: torch.dtype = torch.float32
    ) -> dict[str, Any]:
        """Zero-valued conditioning keyword arguments with the right shapes for one UNet call."""
        config = self.unet_config
        kwargs: dict[str, Any] = {
            "encoder_hidden_states": torch.zeros(
                batch_size, self.text_len, int(config["cross_attention_dim"]), device=device, dtype=dtype
            )
        }
        if config.get("addition_embed_type") == "text_time":
            time_dim = int(config["addition_time_embed_dim"])
            pooled_dim = int(config["projection_class_embeddings_input_dim"]) - 6 * time_dim
            kwargs["added_cond_kwargs"] = {
                "text_embeds": torch.zeros(batch_size, pooled_dim, device=device, dtype=dtype),
                "time_ids": torch.zeros(batch_size, 6, device=device, dtype=dtype),
            }
        return kwargs


def load_architecture(spec: ModelSpec) -> Architecture:
    """The architecture of a resolved model, reading no weights.

    Registry models use the checkpoint's config when it is in the local Hugging Face cache and
    the shipped copy otherwise; hub ids download ``unet/config.json`` (honouring
    ``HF_HUB_OFFLINE``); folders read their own files; built-in models build their config.

    Raises:
        WeightsUnavailableError: a hub id whose config is neither cached nor downloadable.
        UnsupportedModelError: the denoiser is not a ``UNet2DConditionModel``.
    """
    if spec.source == "builtin":
        from autosel.models.tiny import tiny_architecture

        return tiny_architecture(spec.name)
    if spec.source == "folder":
        folder = Path(spec.path or spec.name)
        return _architecture_from_files(
            spec.name, lambda name: folder / name if (folder / name).is_file() else None
        )
    if spec.source == "registry":
        cached = _cached_file(spec.hub_id, "unet/config.json")
        if cached is not None:
            return _architecture_from_files(spec.name, lambda name: _cached_file(spec.hub_id, name))
        return shipped_architecture(spec.architecture or spec.name)
    return _architecture_from_files(spec.name, lambda name: _hub_file(spec.hub_id, name))


def shipped_architecture(name: str) -> Architecture:
    """The offline architecture shipped with autosel for registry model ``name``."""
    text = resources.files("autosel.models").joinpath("configs", f"{name}.json").read_text()
    document = json.loads(text)
    return Architecture(
        unet_config=document["unet"],
        text_len=int(document["text_encoder"]["max_position_embeddings"]),
        vae_scale_factor=int(document["vae"]["scale_factor"]),
        latent_channels=int(document["vae"]["latent_channels"]),
        source=f"shipped config {name}.json ({document.get('source', '')})",
    )


def _architecture_from_files(name: str, locate) -> Architecture:
    unet_file = locate("unet/config.json")
    if unet_file is None:
        raise UnsupportedModelError(
            f"model '{name}' has no unet/config.json: only UNet2DConditionModel pipelines "
            "(SD 1.x/2.x, SDXL families) are supported so far"
        )
    unet_config = _read_json(unet_file)
    class_name = unet_config.get("_class_name", "UNet2DConditionModel")
    if class_name != "UNet2DConditionModel":
        raise UnsupportedModelError(
            f"model '{name}' has a {class_name} denoiser: only UNet2DConditionModel is supported so far"
        )
    text_len = 77
    text_file = locate("text_encoder/config.json")
    if text_file is not None:
        text_len = int(_read_json(text_file).get("max_position_embeddings", 77))
    vae_scale_factor, latent_channels = 8, int(unet_config.get("in_channels", 4))
    vae_file = locate("vae/config.json")
    if vae_file is not None:
        vae_config = _read_json(vae_file)
        vae_scale_factor = 2 ** (len(vae_config.get("block_out_channels", [0] * 4)) - 1)
        latent_channels = int(vae_config.get("latent_channels", latent_channels))
    return Architecture(unet_config, text_len, vae_scale_factor, latent_channels, source=str(unet_file))


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
