"""`tiny-dit`: the SD3-style transformer trained on shapes, committed as a diffusers folder,
and its random twin."""

from __future__ import annotations

import torch

from autosel.config import FeatureConfig
from autosel.extract import FeatureExtractor
from autosel.models import REGISTRY, load_pipeline
from autosel.models.registry import TINY_DIT_FOLDER, TINY_FOLDER
from autosel.models.tiny import build_tiny_pipeline


def test_the_registry_lists_tiny_dit_and_its_twin():
    assert REGISTRY["tiny-dit"].family == "sd3" and REGISTRY["tiny-dit"].path == TINY_DIT_FOLDER
    assert REGISTRY["tiny-dit-random"].family == "sd3" and REGISTRY["tiny-dit-random"].source == "builtin"


def test_tiny_dit_loads_offline_and_differs_from_its_twin_in_the_transformer_only():
    trained, twin = load_pipeline("tiny-dit"), build_tiny_pipeline("tiny-dit-random")
    assert type(trained).__name__ == "StableDiffusion3Pipeline"
    shapes = {name: value.shape for name, value in trained.transformer.state_dict().items()}
    assert shapes == {name: value.shape for name, value in twin.transformer.state_dict().items()}
    assert all(torch.equal(a, b) for a, b in zip(trained.vae.state_dict().values(), twin.vae.state_dict().values()))
    assert not all(torch.equal(a, b) for a, b in zip(trained.transformer.state_dict().values(), twin.transformer.state_dict().values()))


def test_the_committed_folder_is_small_and_shares_tiny_s_vae():
    size = sum(path.stat().st_size for path in TINY_DIT_FOLDER.rglob("*") if path.is_file())
    assert size <= 25 * 10**6
    from safetensors.torch import load_file

    ours = load_file(TINY_DIT_FOLDER / "vae" / "diffusion_pytorch_model.safetensors")
    theirs = load_file(TINY_FOLDER / "vae" / "diffusion_pytorch_model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_tiny_dit_features_are_deterministic():
    config = FeatureConfig.from_dict({"model": {"name": "tiny-dit"}, "extraction": {"image_size": 64},
                                      "activations": [{"id": "vit-block3-out", "timestep": 50}]})
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    first = FeatureExtractor(config, batch_size=2)(images)["vit-block3-out"]
    again = FeatureExtractor(config, batch_size=2)(images)["vit-block3-out"]
    assert first.shape == (2, 128, 8, 8) and torch.equal(first, again)
