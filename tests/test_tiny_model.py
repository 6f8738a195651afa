"""The committed tiny model: it loads offline like any diffusers folder, and fails clearly."""

from __future__ import annotations

import shutil

import pytest
import torch

from autosel.capture import ActivationCapture
from autosel.catalog import list_activations
from autosel.errors import NotAPipelineError
from autosel.models import Architecture, load_pipeline, resolve_model
from autosel.models.tiny import tiny_architecture


def test_tiny_is_the_committed_pipeline_folder():
    spec = resolve_model("tiny")
    assert spec.source == "folder" and (spec.path / "model_index.json").is_file()
    weights = sum(f.stat().st_size for f in spec.path.rglob("*.safetensors"))
    assert 0 < weights <= 25 * 2**20


def test_random_twin_has_the_same_architecture():
    trained = Architecture.from_pipeline(load_pipeline("tiny"))
    twin = tiny_architecture("tiny-random")
    keys = ["block_out_channels", "down_block_types", "up_block_types", "layers_per_block", "cross_attention_dim", "sample_size"]
    assert {k: list(trained.unet_config[k]) if isinstance(trained.unet_config[k], (list, tuple)) else trained.unet_config[k] for k in keys} == {
        k: twin.unet_config[k] for k in keys
    }
    assert (trained.vae_scale_factor, trained.text_len) == (twin.vae_scale_factor, twin.text_len)


def test_trained_weights_differ_from_the_random_twin():
    trained, twin = load_pipeline("tiny").unet, load_pipeline("tiny-random").unet
    assert any(not torch.equal(a, b) for a, b in zip(trained.parameters(), twin.parameters()))


def test_every_catalogue_point_of_tiny_fires_with_the_announced_shape():
    pipeline = load_pipeline("tiny")
    architecture = Architecture.from_pipeline(pipeline)
    catalogue = list_activations("tiny")
    latents = torch.randn(1, architecture.latent_channels, *architecture.latent_size(None))
    conditioning = architecture.dummy_conditioning(1, device="cpu")
    with torch.no_grad(), ActivationCapture(pipeline.unet, {p.id: p.tap for p in catalogue}) as capture:
        features = capture.run(latents, torch.tensor([50]), **conditioning)
    for point in catalogue:
        assert tuple(features[point.id].shape) == (1, point.channels, point.height, point.width), point.id


def test_a_folder_without_weights_is_a_clear_error(tmp_path):
    folder = tmp_path / "tiny"
    shutil.copytree(resolve_model("tiny").path, folder)
    for weights in (folder / "unet").glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(NotAPipelineError, match="cannot load a diffusers pipeline from"):
        load_pipeline(str(folder))


def test_corrupt_weights_are_a_clear_error(tmp_path):
    folder = tmp_path / "tiny"
    shutil.copytree(resolve_model("tiny").path, folder)
    for weights in (folder / "unet").glob("*.safetensors"):
        weights.write_bytes(b"\x00" * 64)
    with pytest.raises(NotAPipelineError, match="cannot load a diffusers pipeline from"):
        load_pipeline(str(folder))
