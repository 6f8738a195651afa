"""Loading real pipelines: built-in models, folders, and weights that cannot be had here."""

from __future__ import annotations

import pytest
import torch

from autosel.errors import WeightsUnavailableError
from autosel.models import load_pipeline


def test_registry_model_without_cached_weights_names_the_repo_and_both_ways_out():
    with pytest.raises(WeightsUnavailableError) as caught:
        load_pipeline("sd15")
    message = str(caught.value)
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in message
    assert "hf download" in message and "--model /path/to/pipeline" in message


def test_builtin_models_are_seeded(tmp_path):
    first, second = load_pipeline("tiny-random"), load_pipeline("tiny-random")
    assert all(torch.equal(a, b) for a, b in zip(first.unet.parameters(), second.unet.parameters()))


def test_folder_loads_with_its_own_weights(tiny_xl_folder):
    from_folder = load_pipeline(str(tiny_xl_folder))
    builtin = load_pipeline("tiny-xl-random")
    assert type(from_folder).__name__ == "StableDiffusionXLPipeline"
    assert all(torch.equal(a, b) for a, b in zip(from_folder.unet.parameters(), builtin.unet.parameters()))


def test_dtype_is_applied_to_builtin_models():
    pipeline = load_pipeline("tiny-random", dtype=torch.bfloat16)
    assert next(pipeline.unet.parameters()).dtype == torch.bfloat16
