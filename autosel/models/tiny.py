"""Built-in tiny pipelines, built from config with seeded random weights (nothing downloaded).

``tiny-random`` mirrors SD 1.5's layout (cross-attention in the first down levels, one text
encoder); ``tiny-xl-random`` mirrors SDXL's (no attention at down-level0, several transformer
blocks per attention, text_time added conditioning, two text encoders). One twin per other
family: ``tiny-pixart-random`` (AdaLN-single DiT, cross-attention to a T5), ``tiny-sd3-random``
(MMDiT, three text encoders, rectified flow), ``tiny-flux-random`` (double + single-stream
blocks, dynamic flow shift), ``tiny-hunyuan-random`` (DiT with long skips, CLIP + T5),
``tiny-if-random`` (pixel-space UNet on T5) and
``tiny-ddpm-random`` (unconditional ``UNet2DModel``). All run a forward in milliseconds on a
CPU and serve as tests and as random-weight controls; ``save_pretrained`` writes them as the
real pipelines' folders.
"""

from __future__ import annotations

from typing import Any

import torch

from autosel.models.families import Architecture
from autosel.models.registry import TINY_FOLDER
from autosel.models.standin import build_pipeline
from autosel.models.twins import TWIN_SPECS

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

T5_DIM = 64
FLOW_SCHEDULER_CONFIG: dict[str, Any] = {"num_train_timesteps": 1000, "shift": 3.0}
FLUX_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5,
    "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096,
}
IF_SCHEDULER_CONFIG: dict[str, Any] = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"}

_DENOISER_CONFIGS: dict[str, dict[str, Any]] = {
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
    "tiny-pixart-random": {
        "_class_name": "PixArtTransformer2DModel",
        "sample_size": 16,
        "patch_size": 2,
        "in_channels": 4,
        "out_channels": 8,
        "num_layers": 2,
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "cross_attention_dim": 32,
        "caption_channels": T5_DIM,
        "norm_type": "ada_norm_single",
        "norm_elementwise_affine": False,
        "norm_eps": 1e-6,
        "use_additional_conditions": False,
        "interpolation_scale": 1,
    },
    "tiny-sd3-random": {
        "_class_name": "SD3Transformer2DModel",
        "sample_size": 16,
        "patch_size": 2,
        "in_channels": 4,
        "out_channels": 4,
        "num_layers": 3,
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "joint_attention_dim": T5_DIM,
        "caption_projection_dim": 32,
        "pooled_projection_dim": 2 * TEXT_DIM,
        "pos_embed_max_size": 32,
    },
    "tiny-dit-random": {  # the untrained twin of `tiny-dit` (experiments/train_tiny_dit.py)
        "_class_name": "SD3Transformer2DModel",
        "sample_size": 16,
        "patch_size": 2,
        "in_channels": 4,
        "out_channels": 4,
        "num_layers": 6,
        "num_attention_heads": 4,
        "attention_head_dim": 32,
        "joint_attention_dim": T5_DIM,
        "caption_projection_dim": 128,
        "pooled_projection_dim": 2 * TEXT_DIM,
        "pos_embed_max_size": 32,
    },
    "tiny-flux-random": {
        "_class_name": "FluxTransformer2DModel",
        "patch_size": 1,
        "in_channels": 16,
        "num_layers": 2,
        "num_single_layers": 2,
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "joint_attention_dim": T5_DIM,
        "pooled_projection_dim": TEXT_DIM,
        "guidance_embeds": False,
        "axes_dims_rope": [4, 6, 6],
    },
    "tiny-hunyuan-random": {
        "_class_name": "HunyuanDiT2DModel",
        "sample_size": 16,
        "patch_size": 2,
        "in_channels": 4,
        "num_layers": 4,
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "hidden_size": 32,
        "mlp_ratio": 2.0,
        "learn_sigma": True,
        "cross_attention_dim": TEXT_DIM,
        "cross_attention_dim_t5": T5_DIM,
        "pooled_projection_dim": 32,
        "text_len": 77,
        "text_len_t5": 256,
        "use_style_cond_and_image_meta_size": False,
    },
    "tiny-if-random": {
        "_class_name": "UNet2DConditionModel",
        "sample_size": 64,
        "in_channels": 3,
        "out_channels": 6,
        "block_out_channels": [16, 32],
        "layers_per_block": 1,
        "down_block_types": ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"],
        "up_block_types": ["SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
        "mid_block_type": "UNetMidBlock2DSimpleCrossAttn",
        "cross_attention_dim": 32,
        "encoder_hid_dim": T5_DIM,
        "attention_head_dim": 8,
        "addition_embed_type": "text",
        "addition_embed_type_num_heads": 2,
        "act_fn": "gelu",
        "resnet_time_scale_shift": "scale_shift",
        "cross_attention_norm": "group_norm",
        "norm_num_groups": 8,
    },
    "tiny-ddpm-random": {
        "_class_name": "UNet2DModel",
        "sample_size": 64,
        "in_channels": 3,
        "out_channels": 3,
        "block_out_channels": [16, 32],
        "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
        "attention_head_dim": 8,
        "norm_num_groups": 8,
    },
}
TWINS = tuple(_DENOISER_CONFIGS)
"""The built-in random-weight models, one or two per family."""

_TEXT_LENS = {"tiny-random": TEXT_LEN, "tiny-xl-random": TEXT_LEN, "tiny-if-random": 77, "tiny-ddpm-random": 0}


def tiny_architecture(name: str) -> Architecture:
    """The architecture of built-in model ``name`` (one of :data:`TWINS`).

    ``tiny-random`` is the architecture of the trained ``tiny`` model, with seeded random weights.
    Generic-path twins (:data:`autosel.models.twins.TWIN_SPECS`) record their calls from the twin.
    """
    if name in TWIN_SPECS:
        _, denoiser = TWIN_SPECS[name].denoiser
        config = {**denoiser.config, "_class_name": denoiser.class_name}
        architecture = Architecture.from_config(config, source=f"built-in {name}", native_size=64)
        return architecture.bind_pipeline(lambda: _twin_pipeline(name))
    fields: dict[str, Any] = {
        "vae_scale_factor": 2 ** (len(VAE_CONFIG["block_out_channels"]) - 1),
        "latent_channels": VAE_CONFIG["latent_channels"],
        "native_size": 64,
    }
    if name in _TEXT_LENS:
        fields["text_len"] = _TEXT_LENS[name]
    return Architecture.from_config(_DENOISER_CONFIGS[name], source=f"built-in {name}", **fields)


def build_tiny_pipeline(name: str, seed: int = 0):
    """A complete diffusers pipeline for built-in model ``name`` with seeded random weights.

    The same ``name`` and ``seed`` always give bitwise identical weights; the global torch
    random state is left untouched.
    """
    if name in TWIN_SPECS:
        return build_pipeline(TWIN_SPECS[name], seed=seed)
    architecture = tiny_architecture(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipeline = _BUILDERS[architecture.family](architecture)
    if name == "tiny-dit-random":  # the trained tiny VAE: the twin differs from tiny-dit in its transformer only
        from diffusers import AutoencoderKL

        pipeline.vae = AutoencoderKL.from_pretrained(TINY_FOLDER / "vae")
        pipeline.vae.register_to_config(shift_factor=0.0)  # SD3's pipeline decodes with it; 0 = as tiny encodes
        pipeline.register_modules(vae=pipeline.vae)
    pipeline.set_progress_bar_config(disable=True)
    for component in pipeline.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    return pipeline


_TWIN_PIPELINES: dict[str, Any] = {}


def _twin_pipeline(name: str):
    """One shared twin pipeline per name for catalogue recordings (shapes only)."""
    if name not in _TWIN_PIPELINES:
        _TWIN_PIPELINES[name] = build_tiny_pipeline(name)
    return _TWIN_PIPELINES[name]


def _clip_pair(projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = byte_level_clip_tokenizer()
    config = CLIPTextConfig(
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
    return tokenizer, (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _t5_encoder(tokenizer):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=len(tokenizer), d_model=T5_DIM, d_kv=16, d_ff=2 * T5_DIM, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return T5EncoderModel(config)


def _sd_pipeline(architecture: Architecture):
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    unet = architecture.build_denoiser(device="cpu")
    vae = AutoencoderKL(**VAE_CONFIG)
    tokenizer, text_encoder = _clip_pair()
    scheduler = DDIMScheduler(**SCHEDULER_CONFIG)
    if architecture.family == "sdxl":
        _, text_encoder_2 = _clip_pair(projection=True)
        return StableDiffusionXLPipeline(
            vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
            tokenizer_2=tokenizer, unet=unet, scheduler=scheduler,
        )
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def _pixart_pipeline(architecture: Architecture):
    from diffusers import AutoencoderKL, DDIMScheduler, PixArtSigmaPipeline

    transformer = architecture.build_denoiser(device="cpu")
    vae = AutoencoderKL(**VAE_CONFIG)
    tokenizer = byte_level_clip_tokenizer()
    return PixArtSigmaPipeline(
        tokenizer=tokenizer, text_encoder=_t5_encoder(tokenizer), vae=vae, transformer=transformer,
        scheduler=DDIMScheduler(**SCHEDULER_CONFIG),
    )


def _sd3_pipeline(architecture: Architecture):
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

    transformer = architecture.build_denoiser(device="cpu")
    vae = AutoencoderKL(**VAE_CONFIG)
    tokenizer, text_encoder = _clip_pair(projection=True)
    _, text_encoder_2 = _clip_pair(projection=True)
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(**FLOW_SCHEDULER_CONFIG), vae=vae,
        text_encoder=text_encoder, tokenizer=tokenizer, text_encoder_2=text_encoder_2, tokenizer_2=tokenizer,
        text_encoder_3=_t5_encoder(tokenizer), tokenizer_3=tokenizer,
    )


def _flux_pipeline(architecture: Architecture):
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline

    transformer = architecture.build_denoiser(device="cpu")
    vae = AutoencoderKL(**VAE_CONFIG)
    tokenizer, text_encoder = _clip_pair()
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER_CONFIG), vae=vae, text_encoder=text_encoder,
        tokenizer=tokenizer, text_encoder_2=_t5_encoder(tokenizer), tokenizer_2=tokenizer, transformer=transformer,
    )


def _hunyuan_pipeline(architecture: Architecture):
    from diffusers import AutoencoderKL, DDPMScheduler, HunyuanDiTPipeline
    from transformers import BertConfig, BertModel

    tokenizer = byte_level_clip_tokenizer()
    bert = BertModel(BertConfig(
        vocab_size=len(tokenizer), hidden_size=TEXT_DIM, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=2 * TEXT_DIM, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
    ))
    return HunyuanDiTPipeline(
        vae=AutoencoderKL(**VAE_CONFIG), text_encoder=bert, tokenizer=tokenizer,
        transformer=architecture.build_denoiser(device="cpu"), scheduler=DDPMScheduler.from_config(SCHEDULER_CONFIG),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        text_encoder_2=_t5_encoder(tokenizer), tokenizer_2=tokenizer,
    )


def _if_pipeline(architecture: Architecture):
    from diffusers import DDPMScheduler, IFPipeline

    unet = architecture.build_denoiser(device="cpu")
    tokenizer = byte_level_clip_tokenizer()
    return IFPipeline(
        tokenizer=tokenizer, text_encoder=_t5_encoder(tokenizer), unet=unet,
        scheduler=DDPMScheduler(**IF_SCHEDULER_CONFIG), safety_checker=None, feature_extractor=None,
        watermarker=None, requires_safety_checker=False,
    )


def _ddpm_pipeline(architecture: Architecture):
    from diffusers import DDPMPipeline, DDPMScheduler

    return DDPMPipeline(unet=architecture.build_denoiser(device="cpu"), scheduler=DDPMScheduler(**IF_SCHEDULER_CONFIG))


_BUILDERS = {
    "sd": _sd_pipeline, "sdxl": _sd_pipeline, "pixart": _pixart_pipeline, "sd3": _sd3_pipeline,
    "flux": _flux_pipeline, "if": _if_pipeline, "ddpm": _ddpm_pipeline, "hunyuan": _hunyuan_pipeline,
}


def byte_level_clip_tokenizer():
    """A CLIP tokenizer whose vocabulary is the 256 byte symbols (no merges, no files)."""
    import json
    import tempfile
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
