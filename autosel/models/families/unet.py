"""UNet families: latent SD 1.x/2.x (``sd``), SDXL (``sdxl``), pixel-space DeepFloyd IF stage I
(``if``) and unconditional ``UNet2DModel`` pipelines (``ddpm``). All share the seed codebase's
ids (``{down,up}-level{L}-repeat{R}-…``) and DDPM noise; they differ in conditioning."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from autosel.capture import Tap, TapKind
from autosel.models.families.base import Architecture, DiscoveredPoint

BLOCK_KINDS = ("self-q", "self-k", "self-v", "self-map", "cross-q", "cross-map", "ffn-inner", "out")
"""The per-transformer-block kinds, in the seed codebase's order."""

_BLOCK_PATH = re.compile(r"^(?:(down|up)_blocks\.(\d+)|(mid)_block)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)$")


def discover_unet(denoiser: nn.Module) -> list[DiscoveredPoint]:
    """Every activation point of a diffusers UNet, found by module type (unordered by depth)."""
    from diffusers.models.attention import BasicTransformerBlock
    from diffusers.models.attention_processor import Attention
    from diffusers.models.resnet import ResnetBlock2D
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    candidates: list[DiscoveredPoint] = []
    if hasattr(denoiser, "conv_in"):
        candidates.append(DiscoveredPoint("unet-in", "unet-in", "unet", None, None, None, Tap("conv_in", TapKind.INPUT)))
        candidates.append(
            DiscoveredPoint("unet-after-conv-in", "unet-after-conv-in", "unet", None, None, None, Tap("conv_in", TapKind.OUTPUT))
        )
    for path, module in denoiser.named_modules():
        match = _BLOCK_PATH.match(path)
        if match is None:
            continue
        direction, level_text, mid, group, index_text = match.groups()
        stage = direction or mid
        level = int(level_text) if level_text is not None else None
        index = int(index_text)
        prefix = f"{stage}-level{level}" if stage != "mid" else "mid"
        if group in ("downsamplers", "upsamplers"):  # Downsample2D, or a ResnetBlock2D with down/up=True (IF)
            kind = "downsampler-out" if group == "downsamplers" else "upsampler-out"
            candidates.append(DiscoveredPoint(f"{prefix}-{kind}", kind, stage, level, None, None, Tap(path, TapKind.OUTPUT)))
        elif isinstance(module, ResnetBlock2D):
            base = f"{prefix}-repeat{index}-res"
            scale = 1.0 / float(getattr(module, "output_scale_factor", 1.0))
            candidates.append(DiscoveredPoint(f"{base}-out", "res-out", stage, level, index, None, Tap(path, TapKind.OUTPUT)))
            candidates.append(
                DiscoveredPoint(
                    f"{base}-increment", "res-increment", stage, level, index, None,
                    Tap(f"{path}.conv2", TapKind.OUTPUT, scale=scale),
                )
            )
        elif isinstance(module, Transformer2DModel):
            vit = f"{prefix}-repeat{index}-vit" if stage != "mid" or index > 0 else "mid-vit"
            candidates.append(DiscoveredPoint(f"{vit}-out", "vit-out", stage, level, index, None, Tap(path, TapKind.OUTPUT)))
            for block_index, block in enumerate(getattr(module, "transformer_blocks", [])):
                if isinstance(block, BasicTransformerBlock):
                    candidates.extend(_block_candidates(vit, stage, level, index, block_index, block, path))
        elif isinstance(module, Attention):  # a bare attention on the 2-D map (UNet2DModel, IF)
            vit = f"{prefix}-repeat{index}-vit" if stage != "mid" or index > 0 else "mid-vit"
            candidates.append(DiscoveredPoint(f"{vit}-out", "vit-out", stage, level, index, None, Tap(path, TapKind.OUTPUT)))
    if hasattr(denoiser, "conv_out"):
        candidates.append(DiscoveredPoint("unet-out", "unet-out", "unet", None, None, None, Tap("conv_out", TapKind.OUTPUT)))
    return candidates


def _block_candidates(
    vit: str, stage: str, level: int | None, repeat: int, index: int, block: nn.Module, grid: str
) -> list[DiscoveredPoint]:
    path = f"{grid}.transformer_blocks.{index}"
    name = f"{vit}-block{index}"
    taps: dict[str, Tap] = {}
    if block.attn1 is not None and not block.attn1.is_cross_attention:
        for letter in "qkv":
            taps[f"self-{letter}"] = Tap(f"{path}.attn1.to_{letter}", TapKind.TOKENS, grid_from=grid)
        taps["self-map"] = Tap(f"{path}.attn1", TapKind.ATTENTION_MAP, grid_from=grid)
    if getattr(block, "attn2", None) is not None:
        taps["cross-q"] = Tap(f"{path}.attn2.to_q", TapKind.TOKENS, grid_from=grid)
        taps["cross-map"] = Tap(f"{path}.attn2", TapKind.ATTENTION_MAP, grid_from=grid)
    if getattr(block, "ff", None) is not None and hasattr(block.ff, "net"):
        taps["ffn-inner"] = Tap(f"{path}.ff.net.0", TapKind.TOKENS, grid_from=grid)
    taps["out"] = Tap(path, TapKind.TOKENS, grid_from=grid)
    return [
        DiscoveredPoint(f"{name}-{kind}", "vit-block-out" if kind == "out" else kind, stage, level, repeat, index, taps[kind])
        for kind in BLOCK_KINDS
        if kind in taps
    ]


class _LatentUNet(Architecture):
    """What the ``UNet2DConditionModel`` families share: discovery, the text length of their
    first text encoder, and the match on the class (told apart by their added conditioning)."""

    denoiser_class = "UNet2DConditionModel"

    @classmethod
    def matches(cls, config: Mapping[str, Any]) -> bool:
        return str(config.get("_class_name", "UNet2DConditionModel")) == "UNet2DConditionModel" and cls._kind(config)

    @staticmethod
    def _kind(config: Mapping[str, Any]) -> bool:
        raise NotImplementedError

    @classmethod
    def text_len_for(cls, pipeline_class, text_encoder_config):
        length = (text_encoder_config or {}).get("max_position_embeddings")
        return int(length) if length else None

    def discover(self, denoiser: nn.Module) -> list[DiscoveredPoint]:
        return discover_unet(denoiser)

    def dummy_conditioning(self, batch, device="meta", dtype=torch.float32, image_hw=None):
        config = self.denoiser_config
        width = int(config.get("encoder_hid_dim") or config["cross_attention_dim"])
        return {"encoder_hidden_states": torch.zeros(batch, self.text_len, width, device=device, dtype=dtype)}


def _is_pixel_unet(config: Mapping[str, Any]) -> bool:
    return int(config.get("in_channels", 4)) == 3 or config.get("addition_embed_type") == "text"


class StableDiffusion(_LatentUNet):
    """SD 1.x/2.x layout: a ``UNet2DConditionModel`` on VAE latents, one CLIP text encoder."""

    name = "sd"
    description = "latent UNet, CLIP text (SD 1.x/2.x)"

    @staticmethod
    def _kind(config):
        return config.get("addition_embed_type") != "text_time" and not _is_pixel_unet(config)

    def encode_prompt(self, pipeline, prompt, device, dtype, image_hw):
        embeds = pipeline.encode_prompt(prompt, device, 1, False)[0]
        return {"encoder_hidden_states": embeds.to(dtype)}


class StableDiffusionXL(StableDiffusion):
    """SDXL layout: text_time added conditioning, two CLIP text encoders (also Playground v2)."""

    name = "sdxl"
    description = "latent UNet, two CLIP texts, text_time conditioning (SDXL, Playground v2)"

    @staticmethod
    def _kind(config):
        return config.get("addition_embed_type") == "text_time"

    def dummy_conditioning(self, batch, device="meta", dtype=torch.float32, image_hw=None):
        config = self.denoiser_config
        kwargs = super().dummy_conditioning(batch, device, dtype)
        time_dim = int(config["addition_time_embed_dim"])
        pooled_dim = int(config["projection_class_embeddings_input_dim"]) - 6 * time_dim
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.zeros(batch, pooled_dim, device=device, dtype=dtype),
            "time_ids": torch.zeros(batch, 6, device=device, dtype=dtype),
        }
        return kwargs

    def encode_prompt(self, pipeline, prompt, device, dtype, image_hw):
        embeds, _, pooled, _ = pipeline.encode_prompt(
            prompt=prompt, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        height, width = image_hw
        time_ids = torch.tensor([[height, width, 0, 0, height, width]], device=device, dtype=dtype)
        return {
            "encoder_hidden_states": embeds.to(dtype),
            "added_cond_kwargs": {"text_embeds": pooled.to(dtype), "time_ids": time_ids},
        }


class DeepFloydIF(_LatentUNet):
    """DeepFloyd IF stage I: a pixel-space ``UNet2DConditionModel`` (64 px) on T5 embeddings."""

    name = "if"
    pixel_space = True
    description = "pixel-space UNet, T5 text (DeepFloyd IF stage I)"

    @staticmethod
    def _kind(config):
        return _is_pixel_unet(config)

    @classmethod
    def text_len_for(cls, pipeline_class, text_encoder_config):
        return None  # T5's max_position_embeddings is no token limit: the family's 77

    def encode_prompt(self, pipeline, prompt, device, dtype, image_hw):
        embeds = pipeline.encode_prompt(
            prompt, do_classifier_free_guidance=False, num_images_per_prompt=1, device=device, clean_caption=False
        )[0]
        return {"encoder_hidden_states": embeds.to(dtype)}


class UnconditionalUNet(Architecture):
    """``UNet2DModel`` pipelines (DDPM, e.g. google/ddpm-*): pixels, no text."""

    name = "ddpm"
    denoiser_class = "UNet2DModel"
    pixel_space = True
    default_text_len = 0
    description = "pixel-space UNet2DModel, unconditional (DDPM)"

    def discover(self, denoiser: nn.Module) -> list[DiscoveredPoint]:
        return discover_unet(denoiser)

    def inputs(
        self, sample: torch.Tensor, timestep: torch.Tensor, conditioning: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (sample, timestep), {}
