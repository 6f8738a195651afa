"""experiments/peer_check.py's autosel half: the noise and VAE draws it hands DIFT are the ones
autosel's features were computed with (checked against DIFT's algorithm written from its
definition), and its stand-ins for DIFT's random draws return them. DIFT's own code is not
in the project, so the DIFT half runs only given a checkout (results/peers.md)."""

from __future__ import annotations

import types

import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from experiments_loader import load_experiment

SIZE, PROMPT, ENSEMBLE, T = 64, "a photo of a cat", 3, 261


@pytest.fixture(scope="module")
def peer_check():
    return load_experiment("peer_check")


@pytest.fixture(scope="module")
def folder(peer_check, tmp_path_factory):
    return peer_check.save_folder("tiny-random", tmp_path_factory.mktemp("dift-folder"))


def dift_by_definition(folder, pixels, noise, draws):
    """DIFT's recipe from its paper and README: VAE latent (mean, or a sample per ensemble
    member) × scaling factor, DDIM's forward process at t, one UNet pass with the prompt, the
    output of up block 1 averaged over the ensemble."""
    pipeline = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    scheduler = DDIMScheduler.from_pretrained(folder, subfolder="scheduler")
    with torch.no_grad():
        posterior = pipeline.vae.encode(pixels.repeat(ENSEMBLE, 1, 1, 1)).latent_dist
        latents = (posterior.mean if draws is None else posterior.mean + posterior.std * draws) * pipeline.vae.config.scaling_factor
        noisy = scheduler.add_noise(latents, noise, torch.tensor(T))
        embeddings = pipeline.encode_prompt(PROMPT, "cpu", 1, False)[0].repeat(ENSEMBLE, 1, 1)
        seen = {}
        handle = pipeline.unet.up_blocks[1].register_forward_hook(lambda module, args, output: seen.setdefault("out", output))
        pipeline.unet(noisy, T, encoder_hidden_states=embeddings)
        handle.remove()
    return seen["out"].mean(0, keepdim=True)


@pytest.mark.parametrize("posterior", ["mean", "sample"])
def test_autosel_s_features_follow_dift_s_recipe_with_the_noise_handed_over(peer_check, folder, posterior):
    image = peer_check.test_image(SIZE).resize((SIZE, SIZE))
    features, noise, draws = peer_check.autosel_side(folder, image, SIZE, PROMPT, ENSEMBLE, T, vae_posterior=posterior)
    expected = dift_by_definition(folder, peer_check.dift_pixels(image, SIZE), noise, draws if posterior == "sample" else None)
    largest, cosine = peer_check.compare(features, expected)
    assert largest < 1e-4 and cosine < 1e-9


def test_other_noise_would_not_agree(peer_check, folder):
    image = peer_check.test_image(SIZE).resize((SIZE, SIZE))
    features, noise, _ = peer_check.autosel_side(folder, image, SIZE, PROMPT, ENSEMBLE, T)
    other = torch.randn(noise.shape, generator=torch.Generator().manual_seed(5))
    largest, _ = peer_check.compare(features, dift_by_definition(folder, peer_check.dift_pixels(image, SIZE), other, None))
    assert largest > 1e-3


def test_the_stand_ins_return_the_shared_draws_and_restore_the_originals(peer_check):
    module = types.SimpleNamespace(torch=torch)
    noise, draws = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    posterior = DiagonalGaussianDistribution(torch.randn(2, 8, 8, 8))
    with peer_check.shared_draws(module, noise, draws):
        assert torch.equal(module.torch.randn_like(torch.zeros(2, 4, 8, 8)), noise)
        assert torch.equal(posterior.sample(), posterior.mean + posterior.std * draws)
    with peer_check.shared_draws(module, noise, None):
        assert torch.equal(posterior.sample(), posterior.mean)
    assert module.torch is torch and not torch.equal(posterior.sample(), posterior.mean)
