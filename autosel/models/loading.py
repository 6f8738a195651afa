"""Loading real pipelines: built-in tiny models, hub ids (through the HF cache) and folders.

Weights always come with the checkpoint's own configs (``from_pretrained``); the shipped
architecture JSONs serve the offline catalogue only.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch

from autosel.errors import NotAPipelineError
from autosel.models.architecture import weights_unavailable
from autosel.models.registry import ModelSpec, resolve_model
from autosel.models.tiny import build_tiny_pipeline


def load_pipeline(
    model: str | ModelSpec,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    revision: str | None = None,
):
    """Load a diffusers pipeline for ``model``, ready for feature extraction (eval mode).

    Args:
        model: a ``--model`` reference or a resolved spec.
        dtype: weight dtype of the pipeline's modules.
        device: where to put the modules.
        revision: hub revision (branch, tag or commit) for hub and registry models.

    Raises:
        WeightsUnavailableError: the hub files are neither cached nor downloadable; the
            message names the repo id and both ways out.
        NotAPipelineError: a local folder that ``from_pretrained`` cannot load.
    """
    spec = resolve_model(model) if isinstance(model, str) else model
    if spec.source == "builtin":
        pipeline = build_tiny_pipeline(spec.name)
        if dtype != torch.float32:
            for component in pipeline.components.values():
                if isinstance(component, torch.nn.Module):
                    component.to(dtype=dtype)
    else:
        pipeline = _from_pretrained(spec, dtype, revision)
    pipeline = pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _from_pretrained(spec: ModelSpec, dtype: torch.dtype, revision: str | None):
    from diffusers import DiffusionPipeline

    source = str(spec.path) if spec.source == "folder" else spec.hub_id
    try:
        with warnings.catch_warnings(), _no_loading_bars():
            # newer diffusers renamed torch_dtype to dtype; the old name works in every release
            warnings.simplefilter("ignore", FutureWarning)
            return DiffusionPipeline.from_pretrained(source, torch_dtype=dtype, revision=revision)
    except (OSError, ValueError) as error:
        if spec.source == "folder":
            raise NotAPipelineError(f"cannot load a diffusers pipeline from '{source}': {_first_line(error)}") from None
        raise weights_unavailable(spec.hub_id) from None
    except Exception as error:  # e.g. safetensors' own error type for a corrupt weights file
        if spec.source == "folder":
            raise NotAPipelineError(f"cannot load a diffusers pipeline from '{source}': {_first_line(error)}") from None
        raise


@contextlib.contextmanager
def _no_loading_bars() -> Iterator[None]:
    """diffusers' and transformers' per-component loading bars off (autosel shows its own)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_on, transformers_on = diffusers_logging.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if diffusers_on:
            diffusers_logging.enable_progress_bar()
        if transformers_on:
            transformers_logging.enable_progress_bar()


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def check_model_files(model: str | ModelSpec, revision: str | None = None) -> ModelSpec:
    """Fail now, with the download line, when a hub model's files cannot be had here: they are
    not in the local Hugging Face cache and the hub is off (``HF_HUB_OFFLINE``). Folders are
    checked by :func:`resolve_model`; built-in models need nothing. Reads no weights.

    Raises:
        WeightsUnavailableError, NotAPipelineError, UnknownModelError.
    """
    import os

    spec = resolve_model(model) if isinstance(model, str) else model
    if spec.source in ("builtin", "folder") or spec.hub_id is None:
        return spec
    if os.environ.get("HF_HUB_OFFLINE", "0") in ("", "0"):
        return spec  # online: from_pretrained may still download them
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(spec.hub_id, "model_index.json", revision=revision)
    if not isinstance(found, str):
        raise weights_unavailable(spec.hub_id)
    return spec
