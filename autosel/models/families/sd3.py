"""Stable Diffusion 3 / 3.5: an MMDiT (``SD3Transformer2DModel``) whose joint attention mixes
image and text tokens, trained with rectified flow; conditioning from CLIP-L, CLIP-G and T5.
The denoiser's timestep input is σ·1000 (as the pipeline passes it)."""

from __future__ import annotations

import inspect

import torch
from torch import nn

from autosel.capture import TapKind
from autosel.models.families.base import DiscoveredPoint
from autosel.models.families.dit import EXTRA_KINDS, DiT, block_candidates, denoiser_input

JOINT_PARTS = {
    "norm-in": ("norm1", TapKind.TOKENS, 0),
    "self-q": ("attn.to_q", TapKind.TOKENS, 0),
    "self-k": ("attn.to_k", TapKind.TOKENS, 0),
    "self-v": ("attn.to_v", TapKind.TOKENS, 0),
    "norm-out": ("ff", TapKind.INPUT_TOKENS, 0),
    "ffn-inner": ("ff.net.0", TapKind.TOKENS, 0),
    "out": ("", TapKind.TOKENS, 1),  # joint blocks return (text, image)
}
"""Taps of a joint-attention block (SD3 and FLUX's double-stream blocks)."""

JOINT_EXTRA = EXTRA_KINDS | {"self-q", "self-k", "self-v"}
"""Beyond the seed's set in joint-attention blocks: the image tokens' projections too."""


PIPELINE_T5_LEN = 256
"""``StableDiffusion3Pipeline``'s default ``max_sequence_length`` (where its signature does not say)."""


def t5_length(pipeline) -> int:
    """T5 tokens per prompt: the pipeline's default ``max_sequence_length`` (256), which it pads
    the T5 prompt to whatever its T5 tokenizer's ``model_max_length`` says (a real checkpoint's
    may say 77 or 512: SD3 pads with unmasked tokens, so the length changes every feature).

    A CLIP tokenizer in the T5's place (autosel's tiny SD3 models share one 16-token CLIP
    tokenizer for all three encoders, and ``tiny-dit`` was trained at that length) keeps its
    own context: there, ``model_max_length`` is a real limit."""
    parameter = inspect.signature(type(pipeline).__call__).parameters.get("max_sequence_length")
    length = int(parameter.default) if parameter is not None and isinstance(parameter.default, int) else PIPELINE_T5_LEN
    tokenizer = getattr(pipeline, "tokenizer_3", None)
    if tokenizer is not None and type(tokenizer).__name__.startswith("CLIPTokenizer"):
        return min(length, int(tokenizer.model_max_length))
    return length


class StableDiffusion3(DiT):
    name = "sd3"
    denoiser_class = "SD3Transformer2DModel"
    flow = True
    flow_timestep_scale = 1000.0
    default_text_len = 333  # 77 CLIP tokens + 256 T5 tokens, as the pipeline concatenates them
    description = "MMDiT, joint attention, rectified flow (SD3, SD3.5)"

    def discover(self, denoiser: nn.Module) -> list[DiscoveredPoint]:
        return [denoiser_input()] + [
            candidate
            for index in range(len(denoiser.transformer_blocks))
            for candidate in block_candidates(index, f"transformer_blocks.{index}", JOINT_PARTS, JOINT_EXTRA)
        ]

    def dummy_conditioning(self, batch, device="meta", dtype=torch.float32, image_hw=None):
        config = self.denoiser_config
        return {
            "encoder_hidden_states": torch.zeros(
                batch, self.text_len, int(config["joint_attention_dim"]), device=device, dtype=dtype
            ),
            "pooled_projections": torch.zeros(batch, int(config["pooled_projection_dim"]), device=device, dtype=dtype),
        }

    def encode_prompt(self, pipeline, prompt, device, dtype, image_hw):
        embeds, _, pooled, _ = pipeline.encode_prompt(
            prompt=prompt, prompt_2=None, prompt_3=None, device=device, num_images_per_prompt=1,
            do_classifier_free_guidance=False, max_sequence_length=t5_length(pipeline),
        )
        return {"encoder_hidden_states": embeds.to(dtype), "pooled_projections": pooled.to(dtype)}

    def inputs(self, sample, timestep, conditioning):
        return (), {"hidden_states": sample, "timestep": timestep, **conditioning}
