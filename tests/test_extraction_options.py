"""extraction.vae_posterior and extraction.resize_filter: the peers' settings, deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from autosel.config import FeatureConfig
from autosel.denoiser import DenoiserRun
from autosel.extract import FeatureExtractor
from autosel.images import resize
from autosel.models import load_pipeline
from autosel.schema import ConfigError

UP = "up-level1-upsampler-out"


@pytest.fixture(scope="module")
def tiny_pipeline():
    return load_pipeline("tiny")


def extractor(pipeline, **extraction) -> FeatureExtractor:
    config = FeatureConfig.from_dict(
        {"model": {"name": "tiny"}, "extraction": {"image_size": 64, **extraction}, "activations": [{"id": UP, "timestep": 261}]}
    )
    return FeatureExtractor(config, pipeline=pipeline)


def images():
    return torch.rand(2, 3, 50, 70, generator=torch.Generator().manual_seed(0))


def test_defaults_are_the_posterior_mean_and_bilinear():
    extraction = FeatureConfig.from_dict({"model": {"name": "tiny"}, "activations": [{"id": UP, "timestep": 1}]}).extraction
    assert (extraction.vae_posterior, extraction.resize_filter) == ("mean", "bilinear")


def test_an_unknown_setting_names_the_field_and_the_choices():
    with pytest.raises(ConfigError, match=r"extraction.vae_posterior.*'mean'.*'sample'"):
        FeatureConfig.from_dict({"model": {"name": "tiny"}, "extraction": {"vae_posterior": "mode"},
                                 "activations": [{"id": UP, "timestep": 1}]})


def test_a_vae_sample_changes_the_features_deterministically(tiny_pipeline):
    mean = extractor(tiny_pipeline)(images())[UP]
    sampled = extractor(tiny_pipeline, vae_posterior="sample")(images())[UP]
    assert not torch.allclose(mean, sampled, atol=1e-4)
    assert torch.equal(sampled, extractor(tiny_pipeline, vae_posterior="sample")(images())[UP])


def test_the_vae_sample_is_seeded_from_the_noise_seed(tiny_pipeline):
    def latents(seed):
        return extractor(tiny_pipeline, vae_posterior="sample", noise_seed=seed).latents_and_noise(images())[0]

    assert torch.equal(latents(3), latents(3))
    assert not torch.equal(latents(3), latents(4))


def test_each_ensemble_member_draws_its_own_vae_sample_around_the_mean(tiny_pipeline):
    run: DenoiserRun = extractor(tiny_pipeline, vae_posterior="sample", ensemble=3)
    latents, noise = run.latents_and_noise(images())
    mean = extractor(tiny_pipeline, ensemble=3).latents_and_noise(images())[0]
    assert latents.shape == noise.shape == (2, 3, *mean.shape[1:])
    assert not torch.equal(latents[:, 0], latents[:, 1])
    _, std = run.denoiser.encode_posterior(run.preprocess(images()))
    deviation = (latents - mean.unsqueeze(1)) / std.unsqueeze(1)
    assert 0.8 < float(deviation.std()) < 1.2  # standard-normal draws scaled by the posterior's spread


def test_bicubic_is_pil_s_bicubic_on_8_bit_pixels():
    pixels = torch.rand(3, 50, 70, generator=torch.Generator().manual_seed(1))
    eight_bit = (pixels * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    expected = np.asarray(Image.fromarray(eight_bit).resize((64, 32), Image.BICUBIC), dtype=np.float32) / 255
    resized = resize(pixels, (32, 64), "stretch", "bicubic")
    assert torch.equal(resized, torch.from_numpy(expected).permute(2, 0, 1))
    assert not torch.allclose(resized, resize(pixels, (32, 64), "stretch"), atol=1e-3)


def test_bicubic_changes_the_features_deterministically(tiny_pipeline):
    bilinear = extractor(tiny_pipeline)(images())[UP]
    bicubic = extractor(tiny_pipeline, resize_filter="bicubic")(images())[UP]
    assert not torch.allclose(bilinear, bicubic, atol=1e-4)
    assert torch.equal(bicubic, extractor(tiny_pipeline, resize_filter="bicubic")(images())[UP])


def test_bicubic_center_crop_keeps_the_requested_size():
    pixels = torch.rand(3, 50, 70, generator=torch.Generator().manual_seed(2))
    assert resize(pixels, (32, 32), "center-crop", "bicubic").shape == (3, 32, 32)


def test_default_settings_keep_the_cache_and_sweep_keys_made_before_they_existed():
    extraction = FeatureConfig.from_dict({"model": {"name": "tiny"}, "activations": [{"id": UP, "timestep": 1}]}).extraction
    assert set(extraction.identity()) == {"image_size", "resize", "prompt", "noise_seed", "ensemble"}
    assert extraction.model_copy(update={"vae_posterior": "sample"}).identity()["vae_posterior"] == "sample"
