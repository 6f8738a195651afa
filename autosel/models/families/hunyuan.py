"""Hunyuan-DiT: a DiT with long skip connections, cross-attention to the concatenation of a
bilingual CLIP (77 tokens) and a multilingual T5 (256 tokens), 2-D rotary position embeddings,
DDPM noise (scaled-linear betas, v-prediction in v1.2). v1.0/1.1 checkpoints
(``use_style_cond_and_image_meta_size``) are also conditioned on a style and the image sizes,
which autosel passes as the pipeline builds them."""

from __future__ import annotations

import inspect

import torch
from torch import nn

from autosel.capture import TapKind
from autosel.models.families.base import DiscoveredPoint
from autosel.models.families.dit import DiT, block_candidates, denoiser_input, patch_grid

_PARTS = {
    "norm-in": ("norm1", TapKind.TOKENS, 0),
    "self-q": ("attn1.to_q", TapKind.TOKENS, 0),
    "self-k": ("attn1.to_k", TapKind.TOKENS, 0),
    "self-v": ("attn1.to_v", TapKind.TOKENS, 0),
    "cross-q": ("attn2.to_q", TapKind.TOKENS, 0),
    "norm-out": ("ff", TapKind.INPUT_TOKENS, 0),
    "ffn-inner": ("ff.net.0", TapKind.TOKENS, 0),
    "out": ("", TapKind.TOKENS, 0),
}
T5_LEN = 256
ORIGINAL_SIZE = (1024, 1024)
"""``HunyuanDiTPipeline``'s default ``original_size`` (used where the pipeline does not say)."""


def image_meta_size(pipeline, image_hw: tuple[int, int]) -> torch.Tensor:
    """The pipeline's size conditioning for an image of ``image_hw``, 1×6: its default
    ``original_size`` (1024×1024), the target size (the image's) and a (0, 0) crop corner."""
    parameter = inspect.signature(type(pipeline).__call__).parameters.get("original_size") if pipeline else None
    original = tuple(parameter.default) if parameter is not None and parameter.default else ORIGINAL_SIZE
    return torch.tensor([[*original, *image_hw, 0, 0]], dtype=torch.float32)


class HunyuanDiT(DiT):
    name = "hunyuan"
    denoiser_class = "HunyuanDiT2DModel"
    default_text_len = 77
    description = "DiT with long skips, cross-attention to CLIP + T5 (Hunyuan-DiT)"

    def discover(self, denoiser: nn.Module) -> list[DiscoveredPoint]:
        return [denoiser_input()] + [
            candidate
            for index in range(len(denoiser.blocks))
            for candidate in block_candidates(index, f"blocks.{index}", _PARTS)
        ]

    def dummy_conditioning(self, batch, device="meta", dtype=torch.float32, image_hw=None):
        config = self.denoiser_config
        clip_dim = int(config.get("cross_attention_dim", 1024))
        t5_dim = int(config.get("cross_attention_dim_t5", 2048))
        return {
            "encoder_hidden_states": torch.zeros(batch, self.text_len, clip_dim, device=device, dtype=dtype),
            "text_embedding_mask": torch.ones(batch, self.text_len, device=device, dtype=torch.long),
            "encoder_hidden_states_t5": torch.zeros(batch, T5_LEN, t5_dim, device=device, dtype=dtype),
            "text_embedding_mask_t5": torch.ones(batch, T5_LEN, device=device, dtype=torch.long),
            "image_meta_size": torch.zeros(batch, 6, device=device, dtype=dtype),
            "style": torch.zeros(batch, device=device, dtype=torch.long),
        }

    def encode_prompt(self, pipeline, prompt, device, dtype, image_hw):
        clip, _, clip_mask, _ = pipeline.encode_prompt(
            prompt, device=device, dtype=dtype, num_images_per_prompt=1, do_classifier_free_guidance=False,
            max_sequence_length=self.text_len, text_encoder_index=0,
        )
        t5, _, t5_mask, _ = pipeline.encode_prompt(
            prompt, device=device, dtype=dtype, num_images_per_prompt=1, do_classifier_free_guidance=False,
            max_sequence_length=T5_LEN, text_encoder_index=1,
        )
        return {
            "encoder_hidden_states": clip.to(dtype), "text_embedding_mask": clip_mask,
            "encoder_hidden_states_t5": t5.to(dtype), "text_embedding_mask_t5": t5_mask,
            # used by v1.0/1.1 only (use_style_cond_and_image_meta_size); passed as the pipeline does
            "image_meta_size": image_meta_size(pipeline, image_hw).to(device, dtype),
            "style": torch.zeros(1, device=device, dtype=torch.long),
        }

    def inputs(self, sample, timestep, conditioning):
        from diffusers.models.embeddings import get_2d_rotary_pos_embed
        from diffusers.pipelines.hunyuandit.pipeline_hunyuandit import get_resize_crop_region_for_grid

        config = self.denoiser_config
        patch = self.patch_size
        grid = patch_grid(tuple(sample.shape[-2:]), patch)
        base = 512 // self.vae_scale_factor // patch
        head_dim = int(config.get("attention_head_dim", 88))
        rotary = get_2d_rotary_pos_embed(
            head_dim, get_resize_crop_region_for_grid(grid, base), grid, device=sample.device, output_type="pt"
        )
        return (), {
            "hidden_states": sample, "timestep": timestep.to(sample.dtype), "image_rotary_emb": rotary,  # as the pipeline passes it
            **conditioning,
        }
