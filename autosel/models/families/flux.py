"""FLUX.1: 19 double-stream (joint-attention) blocks, then 38 single-stream blocks on
``[text, image]`` tokens, rectified flow with a resolution-dependent shift. Latents are packed
2×2 into tokens, so the token grid is the latent's halved. Block ids run on from the double-
stream blocks into the single-stream ones (``vit-block0`` … ``vit-block56``), as in the seed
codebase. The denoiser's timestep input is σ (the pipeline divides by 1000)."""

from __future__ import annotations

import torch
from torch import nn

from autosel.capture import TapKind
from autosel.models.families.base import DiscoveredPoint
from autosel.models.families.dit import DiT, block_candidates, denoiser_input
from autosel.models.families.sd3 import JOINT_EXTRA, JOINT_PARTS

_SINGLE_PARTS = {
    "norm-in": ("norm", TapKind.TOKENS, 0),
    "self-q": ("attn.to_q", TapKind.TOKENS, 0),
    "self-k": ("attn.to_k", TapKind.TOKENS, 0),
    "self-v": ("attn.to_v", TapKind.TOKENS, 0),
    "ffn-inner": ("act_mlp", TapKind.TOKENS, 0),
    "out": ("", TapKind.TOKENS, 1),  # (text, image); older releases return [text, image] tokens, sliced alike
}

GUIDANCE = 3.5
"""Distilled guidance fed to guidance-embedding models (FLUX.1-dev): the pipeline's default."""


class Flux(DiT):
    name = "flux"
    denoiser_class = "FluxTransformer2DModel"
    flow = True
    flow_timestep_scale = 1.0
    default_text_len = 512
    default_sample_size = 128  # FluxPipeline's: 1024 px
    description = "MMDiT, double + single-stream blocks, rectified flow (FLUX.1)"

    def discover(self, denoiser: nn.Module) -> list[DiscoveredPoint]:
        doubles = len(denoiser.transformer_blocks)
        candidates = [denoiser_input(patch=2)]  # its latents come packed 2×2 into tokens
        for index in range(doubles):
            candidates.extend(block_candidates(index, f"transformer_blocks.{index}", JOINT_PARTS, JOINT_EXTRA))
        for index in range(len(denoiser.single_transformer_blocks)):
            candidates.extend(block_candidates(doubles + index, f"single_transformer_blocks.{index}", _SINGLE_PARTS, JOINT_EXTRA))
        return candidates

    @property
    def patch_size(self) -> int:
        return 2 * int(self.denoiser_config.get("patch_size", 1))  # latents are packed 2×2 first

    def dummy_conditioning(self, batch, device="meta", dtype=torch.float32, image_hw=None):
        config = self.denoiser_config
        conditioning = {
            "encoder_hidden_states": torch.zeros(
                batch, self.text_len, int(config["joint_attention_dim"]), device=device, dtype=dtype
            ),
            "pooled_projections": torch.zeros(batch, int(config["pooled_projection_dim"]), device=device, dtype=dtype),
            "txt_ids": torch.zeros(self.text_len, 3, device=device, dtype=dtype),
        }
        return conditioning

    def encode_prompt(self, pipeline, prompt, device, dtype, image_hw):
        embeds, pooled, text_ids = pipeline.encode_prompt(
            prompt=prompt, prompt_2=None, device=device, num_images_per_prompt=1,
            max_sequence_length=self.text_len,
        )
        return {"encoder_hidden_states": embeds.to(dtype), "pooled_projections": pooled.to(dtype), "txt_ids": text_ids}

    def inputs(self, sample, timestep, conditioning):
        rows, channels, height, width = sample.shape
        packed = (
            sample.view(rows, channels, height // 2, 2, width // 2, 2)
            .permute(0, 2, 4, 1, 3, 5)
            .reshape(rows, (height // 2) * (width // 2), channels * 4)
        )
        image_ids = torch.zeros(height // 2, width // 2, 3, device=sample.device, dtype=sample.dtype)
        image_ids[..., 1] = torch.arange(height // 2, device=sample.device, dtype=sample.dtype)[:, None]
        image_ids[..., 2] = torch.arange(width // 2, device=sample.device, dtype=sample.dtype)[None, :]
        kwargs = {
            "hidden_states": packed, "timestep": timestep, "img_ids": image_ids.reshape(-1, 3), **conditioning,
        }
        if self.denoiser_config.get("guidance_embeds"):
            kwargs["guidance"] = torch.full((rows,), GUIDANCE, device=sample.device, dtype=sample.dtype)
        return (), kwargs
