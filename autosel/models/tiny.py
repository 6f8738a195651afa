"""Built-in tiny pipelines, built from config with seeded random weights (nothing downloaded).

``tiny-random`` mirrors SD 1.5's layout (cross-attention in the first down levels, one text
encoder); ``tiny-xl-random`` mirrors SDXL's (no attention at down-level0, several transformer
blocks per attention, text_time added conditioning, two text encoders). Both run a full
forward in milliseconds on a CPU and serve as tests and as random-weight controls.
"""

from __future__ import annotations

from typing import Any

import torch

from autosel.models.architecture import Architecture

TEXT_LEN = 16
TEXT_DIM = 32
VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [16, 32, 32],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 64,
}
SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}

_UNET_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny-random": {
        "_class_name": "UNet2DConditionModel",
        "sample_size": 16,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": [32, 64, 64],
        "layers_per_block": 1,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "cross_attention_dim": TEXT_DIM,
        "attention_head_dim": 2,
        "norm_num_groups": 16,
    },
    "tiny-xl-random": {
        "_class_name": "UNet2DConditionModel",
        "sample_size": 16,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": [32, 64, 64],
        "layers_per_block": 2,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "transformer_layers_per_block": [1, 1, 2],
        "cross_attention_dim": 2 * TEXT_DIM,
        "attention_head_dim": [2, 4, 4],
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 8,
        "projection_class_embeddings_input_dim": 6 * 8 + TEXT_DIM,
        "norm_num_groups": 8,
    },
}


def tiny_architecture(name: str) -> Architecture:
    """The architecture of built-in model ``name`` (``tiny-random`` or ``tiny-xl-random``).

    ``tiny-random`` is the architecture of the trained ``tiny`` model, with seeded random weights.
    """
    return Architecture(
        unet_config=_UNET_CONFIGS[name],
        text_len=TEXT_LEN,
        vae_scale_factor=2 ** (len(VAE_CONFIG["block_out_channels"]) - 1),
        latent_channels=VAE_CONFIG["latent_channels"],
        source=f"built-in {name}",
    )


def build_tiny_pipeline(name: str, seed: int = 0):
    """A complete diffusers pipeline for built-in model ``name`` with seeded random weights.

    The same ``name`` and ``seed`` always give bitwise identical weights; the global torch
    random state is left untouched.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    architecture = tiny_architecture(name)
    tokenizer = _byte_level_clip_tokenizer()
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_DIM,
        intermediate_size=2 * TEXT_DIM,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=TEXT_LEN,
        projection_dim=TEXT_DIM,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = architecture.build_unet(device="cpu")
        vae = AutoencoderKL(**VAE_CONFIG)
        text_encoder = CLIPTextModel(text_config)
        text_encoder_2 = CLIPTextModelWithProjection(text_config) if architecture.family == "sdxl" else None
    scheduler = DDIMScheduler(**SCHEDULER_CONFIG)
    if architecture.family == "sdxl":
        pipeline = StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer,
            unet=unet,
            scheduler=scheduler,
        )
    else:
        pipeline = StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    pipeline.set_progress_bar_config(disable=True)
    for module in (unet, vae, text_encoder, text_encoder_2):
        if module is not None:
            module.eval()
    return pipeline


def _byte_level_clip_tokenizer():
    """A CLIP tokenizer whose vocabulary is the 256 byte symbols (no merges, no files)."""
    import tempfile
    import json
    from pathlib import Path

    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    symbols = sorted(ByteLevel.alphabet())
    vocab = {symbol: index for index, symbol in enumerate(symbols)}
    vocab.update({symbol + "</w>": len(symbols) + index for index, symbol in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    # Written to files because older transformers releases only build CLIPTokenizer from files.
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "vocab.json").write_text(json.dumps(vocab))
        Path(folder, "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer(str(Path(folder, "vocab.json")), str(Path(folder, "merges.txt")), model_max_length=TEXT_LEN)
