"""PixArt-α / PixArt-Σ: a DiT with AdaLN-single modulation and cross-attention to T5 tokens
(``Transformer2DModel`` with ``norm_type: ada_norm_single`` for α checkpoints,
``PixArtTransformer2DModel`` for Σ). DDPM noise, as the UNet families."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from autosel.capture import TapKind
from autosel.models.families.base import DiscoveredPoint
from autosel.models.families.dit import DiT, block_candidates, denoiser_input

_PARTS = {
    "norm-in": ("attn1", TapKind.INPUT_TOKENS, 0),
    "self-q": ("attn1.to_q", TapKind.TOKENS, 0),
    "self-k": ("attn1.to_k", TapKind.TOKENS, 0),
    "self-v": ("attn1.to_v", TapKind.TOKENS, 0),
    "self-map": ("attn1", TapKind.ATTENTION_MAP, 0),
    "cross-q": ("attn2.to_q", TapKind.TOKENS, 0),
    "cross-map": ("attn2", TapKind.ATTENTION_MAP, 0),
    "norm-out": ("ff", TapKind.INPUT_TOKENS, 0),
    "ffn-inner": ("ff.net.0", TapKind.TOKENS, 0),
    "out": ("", TapKind.TOKENS, 0),
}


class PixArt(DiT):
    name = "pixart"
    denoiser_class = "PixArtTransformer2DModel"
    default_text_len = 120
    default_exclude = ("*-map",)  # attention maps, Nq×Nk per image: searched only when a space asks
    description = "DiT, AdaLN-single, cross-attention to T5 (PixArt-α, PixArt-Σ)"

    @classmethod
    def matches(cls, config: Mapping[str, Any]) -> bool:
        # α checkpoints name their class Transformer2DModel (with AdaLN-single norms)
        class_name = config.get("_class_name")
        return class_name == cls.denoiser_class or (
            class_name == "Transformer2DModel" and config.get("norm_type") == "ada_norm_single"
        )

    @classmethod
    def text_len_for(cls, pipeline_class, text_encoder_config):
        return 300 if "Sigma" in pipeline_class else 120  # the pipelines' max_sequence_length

    def build_denoiser(self, device="meta") -> nn.Module:
        from diffusers import PixArtTransformer2DModel

        # α checkpoints name their class Transformer2DModel; the PixArt class takes the same config
        config = {k: v for k, v in self.denoiser_config.items() if not k.startswith("_")}
        allowed = set(PixArtTransformer2DModel.extract_init_dict(config)[0])
        with torch.device(device):
            module = PixArtTransformer2DModel.from_config({k: v for k, v in config.items() if k in allowed})
        return module.eval()

    def discover(self, denoiser: nn.Module) -> list[DiscoveredPoint]:
        candidates = [denoiser_input()]
        for index, block in enumerate(denoiser.transformer_blocks):
            parts = dict(_PARTS)
            if getattr(block, "attn2", None) is None:
                parts.pop("cross-q"), parts.pop("cross-map")
            candidates.extend(block_candidates(index, f"transformer_blocks.{index}", parts))
        return candidates

    def dummy_conditioning(self, batch, device="meta", dtype=torch.float32, image_hw=None):
        length = self.text_len
        width = int(self.denoiser_config.get("caption_channels", 4096))
        return {
            "encoder_hidden_states": torch.zeros(batch, length, width, device=device, dtype=dtype),
            "encoder_attention_mask": torch.ones(batch, length, device=device, dtype=dtype),
        }

    def encode_prompt(self, pipeline, prompt, device, dtype, image_hw):
        embeds, mask, _, _ = pipeline.encode_prompt(
            prompt, do_classifier_free_guidance=False, num_images_per_prompt=1, device=device, clean_caption=False,
            max_sequence_length=self.text_len,
        )
        return {"encoder_hidden_states": embeds.to(dtype), "encoder_attention_mask": mask}

    def inputs(self, sample, timestep, conditioning):
        config = self.denoiser_config
        uses_sizes = config.get("use_additional_conditions")
        if uses_sizes is None:  # the model's own rule when the config leaves it open
            uses_sizes = int(config.get("sample_size", 128)) == 128
        added: dict[str, Any] = {"resolution": None, "aspect_ratio": None}
        if uses_sizes:
            height, width = (side * self.vae_scale_factor for side in sample.shape[-2:])
            rows = sample.shape[0]
            added = {
                "resolution": torch.tensor([[height, width]], device=sample.device, dtype=sample.dtype).expand(rows, 2),
                "aspect_ratio": torch.tensor([[height / width]], device=sample.device, dtype=sample.dtype).expand(rows, 1),
            }
        return (sample,), {"timestep": timestep, "added_cond_kwargs": added, **conditioning}

