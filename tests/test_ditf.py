"""The `ditf-flux` preset computes DiTF's FLUX feature the way DiTF's released code does.

The preset runs on the FLUX twin (`tiny-flux-random`, width 32) with its numbers scaled to the
twin; the reference below re-implements DiTF's recipe with the pipeline's own pieces (VAE,
packing, prompt encoding, transformer) and DiTF's arithmetic, sharing nothing with autosel but
the seeded noise draw.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from autosel.config import ConfigError, FeatureConfig
from autosel.extract import FeatureExtractor

FLUX_WIDTH, TWIN_WIDTH = 3072, 32
TWIN_DOUBLE, TWIN_SINGLE_BLOCK = 2, 1  # the twin has 2 double- and 2 single-stream blocks: its last single one


def twin_config() -> FeatureConfig:
    preset = FeatureConfig.from_yaml("ditf-flux")
    (activation,) = preset.activations
    channels = [round(c * TWIN_WIDTH / FLUX_WIDTH) for c in activation.discard_channels]  # 154, 1446 → 2, 15
    twin_activation = {
        **activation.model_dump(exclude_none=True), "id": f"vit-block{TWIN_DOUBLE + TWIN_SINGLE_BLOCK}-norm-in",
        "discard_channels": channels,
    }
    return preset.replace(
        model={"name": "tiny-flux-random", "dtype": "float32"},
        extraction={**preset.extraction.model_dump(), "image_size": 64},  # 640 px scaled like the width
        activations=[twin_activation],
    )


def ditf_reference(extractor: FeatureExtractor, pixels: torch.Tensor, sigma: float, channels: list[int]) -> torch.Tensor:
    pipeline = extractor.pipeline
    vae, transformer = pipeline.vae, pipeline.transformer
    pixels = extractor.preprocess(pixels)  # at the run's size (a no-op resize here), as the noise is seeded from them
    latents = vae.encode(pixels * 2 - 1).latent_dist.mean
    latents = (latents - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor  # FluxPipeline's
    noise = extractor.noise(pixels, latents.shape[1:])  # B×K×C×h×w: autosel's seeded draw
    block = transformer.single_transformer_blocks[TWIN_SINGLE_BLOCK]
    seen = {}
    handle = block.register_forward_pre_hook(
        lambda module, args, kwargs: seen.update(x=kwargs["hidden_states"], temb=kwargs["temb"]), with_kwargs=True
    )
    prompt_embeds, pooled, text_ids = pipeline.encode_prompt(prompt="", prompt_2=None)  # the pipeline's 512 T5 tokens
    features = []
    try:
        for image in range(len(pixels)):
            inputs, modulations = [], []
            for member in range(noise.shape[1]):
                noisy = (1 - sigma) * latents[image : image + 1] + sigma * noise[image, member][None]  # DiTF: t/1000
                _, channels_, height, width = noisy.shape
                packed = pipeline._pack_latents(noisy, 1, channels_, height, width)
                ids = pipeline._prepare_latent_image_ids(1, height // 2, width // 2, noisy.device, noisy.dtype)
                transformer(
                    hidden_states=packed, timestep=torch.tensor([sigma]), img_ids=ids, txt_ids=text_ids,
                    encoder_hidden_states=prompt_embeds, pooled_projections=pooled,
                    guidance=torch.tensor([3.5]) if transformer.config.guidance_embeds else None,
                )
                inputs.append(seen["x"])  # image tokens, 1×N×C
                modulations.append(block.norm.linear(F.silu(seen["temb"])))
            x = torch.stack(inputs).mean(0)  # DiTF averages the raw feature over the ensemble
            shift, scale = torch.stack(modulations).mean(0)[:, : x.shape[-1]], torch.stack(modulations).mean(0)[:, x.shape[-1] : 2 * x.shape[-1]]
            x[..., channels] = 0.0  # channel discard, before the norm
            x = F.layer_norm(x, (x.shape[-1],), eps=1e-6)  # eval_spair.py's pre_norm: no affine
            x = (1 + scale[:, None]) * x + shift[:, None]
            features.append(x.transpose(1, 2).reshape(1, -1, height // 2, width // 2))
    finally:
        handle.remove()
    return torch.cat(features)


def test_the_ditf_flux_preset_matches_an_independent_reimplementation_on_the_flux_twin():
    config = twin_config()
    (activation,) = config.activations
    assert (activation.sigma, config.extraction.ensemble, activation.discard_channels) == (0.26, 8, [2, 15])
    extractor = FeatureExtractor(config, device="cpu")
    pixels = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    ours = extractor(pixels)[activation.id]
    with torch.no_grad():
        reference = ditf_reference(extractor, pixels, 0.26, activation.discard_channels)
    assert ours.shape == reference.shape == (1, TWIN_WIDTH, 8, 8)
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)


def test_channel_discard_changes_the_norm_in_feature():
    config = twin_config()
    plain = config.replace(activations=[{**config.activations[0].model_dump(exclude_none=True), "discard_channels": None}])
    pixels = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    name = config.activations[0].id
    discarded = FeatureExtractor(config, device="cpu")(pixels)[name]
    ordinary = FeatureExtractor(plain, device="cpu")(pixels)[name]
    assert not torch.allclose(discarded, ordinary, atol=1e-3)


def test_discard_channels_is_refused_on_ids_that_are_not_norm_in():
    with pytest.raises(ConfigError, match=r"activations\[0\]: discard_channels is for norm-in ids"):
        FeatureConfig.from_dict(
            {"model": {"name": "tiny-flux-random"}, "activations": [{"id": "vit-block3-out", "sigma": 0.26, "discard_channels": [1]}]}
        )
