"""Where a model's :class:`Architecture` comes from, reading no weights.

Registry models ship their configs as JSON (``models/configs``) so that the catalogue works
offline; hub ids and local folders use the checkpoint's own ``unet/config.json`` or
``transformer/config.json`` (and, for the generic path, every component's config: a stand-in
pipeline is built from them, see :mod:`autosel.models.standin`). A denoiser built from an
architecture lives on the meta device: it has shapes, never weights. The family (UNet, PixArt,
SD3, FLUX, …, generic) is read from the config's class by the families themselves.
"""

from __future__ import annotations

import functools
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from autosel.errors import NotAPipelineError, UnsupportedModelError, WeightsUnavailableError
from autosel.models.families import Architecture, ImageSize, family_of_config
from autosel.models.registry import ModelSpec
from autosel.models.standin import (
    PipelineSpec,
    denoiser_component,
    spec_from_document,
    spec_from_files,
    standin_pipeline,
)
from autosel.models.tiny import tiny_architecture

__all__ = ["Architecture", "ImageSize", "generic_architecture", "load_architecture", "shipped_architecture"]

_STANDINS: dict[str, Any] = {}


def _standin(spec_key: str, spec: PipelineSpec) -> Any:
    """One stand-in per pipeline description in this process (building one takes seconds)."""
    if spec_key not in _STANDINS:
        _STANDINS[spec_key] = standin_pipeline(spec)
    return _STANDINS[spec_key]


def generic_architecture(spec: PipelineSpec, source: str, native_size: int | None = None) -> Architecture:
    """The architecture of a pipeline described by ``spec`` whose family records its calls (the
    generic path), recording them from a stand-in built from the configs alone (denoiser and VAE
    on the meta device: no weights read or made)."""
    _, component = spec.denoiser
    config = {**component.config, "_class_name": component.class_name}
    architecture = Architecture.from_config(config, source=source, native_size=native_size)
    key = json.dumps([spec.pipeline_class, {k: [c.class_name, c.config] for k, c in spec.components.items()}],
                     sort_keys=True, default=str)
    return architecture.bind_pipeline(lambda: _standin(key, spec))


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
    """An ``architecture`` whose family records its calls gets them from a stand-in of its
    pipeline's configs (the weights, tens of GB for a real model, are never read for a catalogue)."""
    if not architecture.records_calls:
        return architecture
    return generic_architecture(spec_from_files(locate, name), architecture.source, architecture.native_size)


def shipped_architecture(name: str) -> Architecture:
    """The offline architecture shipped with autosel for registry model ``name``."""
    text = resources.files("autosel.models").joinpath("configs", f"{name}.json").read_text()
    document = json.loads(text)
    source = f"shipped config {name}.json ({document.get('source', '')})"
    if "pipeline" in document:  # a whole pipeline's configs: the generic path's stand-in
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
    component = denoiser_component(key for key, entry in index.items() if isinstance(entry, list)) or "unet"
    config_file = locate(f"{component}/config.json")
    if config_file is None:
        raise NotAPipelineError(f"model '{name}' has no {component}/config.json (the denoiser's config)")
    config = _read_json(config_file)
    config.setdefault("_class_name", "UNet2DConditionModel" if component == "unet" else "Transformer2DModel")
    text_file = locate("text_encoder/config.json") if "text_encoder" in index else None
    text_config = _read_json(text_file) if text_file is not None else None
    family = family_of_config(config, f"model '{name}'")
    fields: dict[str, Any] = {}
    text_len = family.text_len_for(str(index.get("_class_name", "")), text_config)
    if text_len is not None:
        fields["text_len"] = text_len
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
