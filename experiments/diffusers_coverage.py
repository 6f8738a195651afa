"""How much of the installed diffusers the generic path covers.

For every 2-D image transformer class of the installed diffusers, a small instance is built
from its own constructor, put into a diffusers pipeline class that takes it (small text
encoders of the pipeline's classes, offline byte tokenizers, a small VAE of its class), and
taken through the generic path:

1. ``record``: ``Architecture.from_config`` (or the family forced to ``generic`` for the
   classes with a hand-written adapter) and ``bind_pipeline`` (one recorded call);
2. ``discover``: ``measure_catalogue`` at the image size (64 px unless stated);
3. ``capture``: one capturing forward of every ``vit-block*-out`` point on two random images,
   shapes checked against the catalogue and values checked finite.

**The set.** A class is *in scope* when it is a ``ModelMixin`` subclass defined in
``diffusers.models.transformers`` whose name ends in ``2DModel`` (2-D image transformers:
``*Transformer2DModel`` and ``*DiT2DModel``). Every other model class of that package (1-D /
audio, 3-D / video, omni, protein, prior) and every class of ``diffusers.models.unets`` is
listed as out of scope. The small constructor kwargs per class are this experiment's setup
(the ``SETUPS`` table), not library code.

Each class runs in its own forked process with a time limit, so that a crash or a hang of one
cannot stall the others. The table goes to stdout and to ``results/coverage.md``.

    .venv/bin/python experiments/diffusers_coverage.py            # all classes
    .venv/bin/python experiments/diffusers_coverage.py --only SanaTransformer2DModel -v
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import multiprocessing as mp
import os
import pkgutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autosel.models.standin import Component, PipelineSpec  # noqa: E402
from autosel.models.twins import qwen25vl_text  # noqa: E402

TIME_LIMIT_S = 90
IMAGE_SIZE = 64
TIMESTEP = 500
TEXT = 32
"""Hidden size of every small text encoder (the transformers' text dims are set to match)."""

ADAPTER_CLASSES = {
    "FluxTransformer2DModel", "SD3Transformer2DModel", "PixArtTransformer2DModel", "HunyuanDiT2DModel",
    "Transformer2DModel",
}
"""Classes with a hand-written adapter: tried with the family forced to ``generic``."""


# -- small components ----------------------------------------------------------------------

def tok(length: int = 256) -> Component:
    return Component("transformers", "PreTrainedTokenizerFast", {"model_max_length": length})


NONE = Component("", "", None)


def t5(dim: int = TEXT, cls: str = "T5EncoderModel", model_type: str = "t5") -> Component:
    return Component("transformers", cls, {
        "model_type": model_type, "vocab_size": 512, "d_model": dim, "d_kv": 16, "d_ff": 64, "num_layers": 2,
        "num_heads": 2, "relative_attention_num_buckets": 8, "pad_token_id": 256, "eos_token_id": 258,
        "decoder_start_token_id": 256,
    })


def decoder(model_type: str, cls: str, dim: int = TEXT, layers: int = 2, **extra: Any) -> Component:
    return Component("transformers", cls, {
        "model_type": model_type, "vocab_size": 512, "hidden_size": dim, "intermediate_size": 64,
        "num_hidden_layers": layers, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
        "max_position_embeddings": 2048, "pad_token_id": 256, "bos_token_id": 257, "eos_token_id": 258, **extra,
    })


def clip(dim: int = TEXT, projection: bool = True) -> Component:
    return Component("transformers", "CLIPTextModelWithProjection" if projection else "CLIPTextModel", {
        "model_type": "clip_text_model", "vocab_size": 512, "hidden_size": dim, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 256, "projection_dim": dim,
        "pad_token_id": 256, "bos_token_id": 257, "eos_token_id": 258,
    })


def qwen25vl(dim: int = TEXT) -> Component:
    return qwen25vl_text(dim, max_positions=2048)


def qwen3vl(dim: int = TEXT, cls: str = "Qwen3VLForConditionalGeneration", layers: int = 2) -> Component:
    return Component("transformers", cls, {
        "model_type": "qwen3_vl",
        "text_config": {
            "model_type": "qwen3_vl_text", "vocab_size": 512, "hidden_size": dim, "intermediate_size": 64,
            "num_hidden_layers": layers, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
            "rope_scaling": {"rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": True},
            "max_position_embeddings": 2048,
        },
        "vision_config": {"depth": 1, "hidden_size": 16, "out_hidden_size": dim, "num_heads": 2,
                          "intermediate_size": 32, "deepstack_visual_indexes": [0], "num_position_embeddings": 16},
        "image_token_id": 300, "video_token_id": 301, "vision_start_token_id": 302, "vision_end_token_id": 303,
    })


def gemma2(dim: int = TEXT, cls: str = "Gemma2Model") -> Component:
    return decoder("gemma2", cls, dim, final_logit_softcapping=30.0, attn_logit_softcapping=50.0,
                   query_pre_attn_scalar=16, sliding_window=64)


SD_VAE = Component("diffusers", "AutoencoderKL", {  # the real VAEs' factor 8 (some pipelines hard-code it)
    "in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "block_out_channels": [8, 16, 16, 16], "layers_per_block": 1,
    "latent_channels": 4, "norm_num_groups": 8, "sample_size": 64,
})
FLUX_VAE = Component("diffusers", "AutoencoderKL", {
    **SD_VAE.config, "latent_channels": 16, "scaling_factor": 0.3611, "shift_factor": 0.1159,
    "use_quant_conv": False, "use_post_quant_conv": False,
})
FLUX2_VAE = Component("diffusers", "AutoencoderKLFlux2", {
    "down_block_types": ["DownEncoderBlock2D"] * 3, "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [16, 32, 32], "layers_per_block": 1, "latent_channels": 32, "norm_num_groups": 8,
    "sample_size": 64, "mid_block_add_attention": False,
})
QWEN_VAE = Component("diffusers", "AutoencoderKLQwenImage", {
    "base_dim": 8, "z_dim": 16, "dim_mult": [1, 2, 2], "num_res_blocks": 1, "temperal_downsample": [False, True],
})
FLOW = Component("diffusers", "FlowMatchEulerDiscreteScheduler", {"num_train_timesteps": 1000, "shift": 3.0})
DYNAMIC_FLOW = Component("diffusers", "FlowMatchEulerDiscreteScheduler", {
    "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15,
    "base_image_seq_len": 256, "max_image_seq_len": 4096,
})
DDPM = Component("diffusers", "DDPMScheduler", {"num_train_timesteps": 1000})


@dataclass
class Setup:
    """One class's small setup: its pipeline and the components that are not defaults.

    ``twin``/``tiny`` reuse a library twin (``autosel.models.twins``) or built-in tiny pipeline.
    """

    pipeline: str = ""
    transformer: dict[str, Any] = field(default_factory=dict)
    components: dict[str, Component] = field(default_factory=dict)
    image_size: int = IMAGE_SIZE
    twin: str = ""
    tiny: str = ""
    note: str = ""


SETUPS: dict[str, Setup] = {
    # -- the hand-written adapters' classes, forced through the generic path ----------------
    "FluxTransformer2DModel": Setup("FluxPipeline", tiny="tiny-flux-random"),
    "SD3Transformer2DModel": Setup("StableDiffusion3Pipeline", tiny="tiny-sd3-random"),
    "PixArtTransformer2DModel": Setup("PixArtSigmaPipeline", tiny="tiny-pixart-random"),
    "HunyuanDiT2DModel": Setup("HunyuanDiTPipeline", tiny="tiny-hunyuan-random", components={"vae": SD_VAE},
                               note="the twin's VAE replaced by one of factor 8 (the pipeline hard-codes 8 for its RoPE grid)"),
    "Transformer2DModel": Setup(
        "PixArtSigmaPipeline", tiny="tiny-pixart-random",
        note="PixArt-style config (ada_norm_single) of the legacy class, in PixArtSigmaPipeline",
    ),
    # -- twins of the library -------------------------------------------------------------
    "QwenImageTransformer2DModel": Setup("QwenImagePipeline", twin="tiny-qwen-image-random"),
    "ZImageTransformer2DModel": Setup("ZImagePipeline", twin="tiny-z-image-random"),
    "ChromaTransformer2DModel": Setup("ChromaPipeline", twin="tiny-chroma-random"),
    # -- the rest: small kwargs of each class's own constructor -----------------------------
    "SanaTransformer2DModel": Setup("SanaPipeline", twin="tiny-sana-random"),
    "AuraFlowTransformer2DModel": Setup("AuraFlowPipeline", {
        "sample_size": 16, "patch_size": 2, "in_channels": 4, "out_channels": 4, "num_mmdit_layers": 1,
        "num_single_dit_layers": 1, "attention_head_dim": 16, "num_attention_heads": 2, "joint_attention_dim": TEXT,
        "caption_projection_dim": 32, "pos_embed_max_size": 256,
    }, {"vae": SD_VAE, "text_encoder": t5(cls="UMT5EncoderModel", model_type="umt5"), "scheduler": FLOW}),
    "BriaTransformer2DModel": Setup("BriaPipeline", {
        "patch_size": 1, "in_channels": 64, "num_layers": 1, "num_single_layers": 1, "attention_head_dim": 16,
        "num_attention_heads": 2, "joint_attention_dim": TEXT, "axes_dims_rope": [4, 6, 6],
    }, {"vae": FLUX_VAE, "text_encoder": t5(), "scheduler": DYNAMIC_FLOW}),
    "BriaFiboTransformer2DModel": Setup("BriaFiboPipeline", {
        "patch_size": 1, "in_channels": 16, "num_layers": 1, "num_single_layers": 1, "attention_head_dim": 16,
        "num_attention_heads": 2, "joint_attention_dim": 2 * TEXT, "axes_dims_rope": [4, 6, 6], "text_encoder_dim": TEXT,
    }, {
        "vae": Component("diffusers", "AutoencoderKLWan", {  # the Wan 2.2 kind: 2×2 patches in, factor 16 (hard-coded)
            "base_dim": 8, "z_dim": 16, "dim_mult": [1, 2, 2, 2], "num_res_blocks": 1,
            "temperal_downsample": [False, True, True], "is_residual": True, "patch_size": 2, "in_channels": 12,
            "out_channels": 12, "latents_mean": [0.0] * 16, "latents_std": [1.0] * 16, "scale_factor_spatial": 16,
        }),
        "text_encoder": decoder("smollm3", "SmolLM3ForCausalLM", layers=2, vocab_size=128256), "scheduler": DYNAMIC_FLOW,
    }),
    "BriaFibo2Transformer2DModel": Setup("BriaFibo2Pipeline", {
        "in_channels": 32, "patch_size": 2, "dim": 32, "n_layers": 2, "n_refiner_layers": 1, "n_heads": 2,
        "cap_feat_dim": 3 * TEXT, "injection_layer_ids": [1], "perceiver_num_layers": 1, "min_num_gist_tokens": 4,
        "max_num_gist_tokens": 8, "gist_step": 4, "gist_min_text_len": 4, "gist_max_text_len": 64,
        "axes_dims": [4, 6, 6], "axes_lens": [256, 64, 64],
    }, {"vae": FLUX2_VAE, "text_encoder": qwen3vl(layers=36), "scheduler": DYNAMIC_FLOW},
        note="36 text layers: the pipeline reads bundles of hidden states up to 35"),
    "CogView3PlusTransformer2DModel": Setup("CogView3PlusPipeline", {
        "patch_size": 2, "in_channels": 16, "out_channels": 16, "num_layers": 2, "attention_head_dim": 16,
        "num_attention_heads": 2, "text_embed_dim": TEXT, "time_embed_dim": 32, "condition_dim": 16,
        "pos_embed_max_size": 32, "sample_size": 16,
    }, {"vae": FLUX_VAE, "text_encoder": t5(), "scheduler": Component(
        "diffusers", "CogVideoXDDIMScheduler", {"num_train_timesteps": 1000, "prediction_type": "v_prediction"})}),
    "CogView4Transformer2DModel": Setup("CogView4Pipeline", {
        "patch_size": 2, "in_channels": 16, "out_channels": 16, "num_layers": 2, "attention_head_dim": 16,
        "num_attention_heads": 2, "text_embed_dim": TEXT, "time_embed_dim": 32, "condition_dim": 16,
        "pos_embed_max_size": 32, "sample_size": 16, "rope_axes_dim": [64, 64],
    }, {"vae": FLUX_VAE, "text_encoder": decoder("glm", "GlmModel", partial_rotary_factor=0.5), "scheduler": DYNAMIC_FLOW}),
    "DiTTransformer2DModel": Setup("DiTPipeline", {
        "num_attention_heads": 2, "attention_head_dim": 16, "in_channels": 4, "out_channels": 8, "num_layers": 2,
        "sample_size": 16, "patch_size": 2, "norm_num_groups": 8,
    }, {"vae": SD_VAE, "scheduler": DDPM}),
    "ErnieImageTransformer2DModel": Setup("ErnieImagePipeline", {
        "hidden_size": 32, "num_attention_heads": 2, "num_layers": 2, "ffn_hidden_size": 64, "in_channels": 128,
        "out_channels": 128, "patch_size": 1, "text_in_dim": TEXT, "rope_axes_dim": [4, 6, 6],
    }, {"vae": FLUX2_VAE, "text_encoder": Component("transformers", "Mistral3Model", {
        "model_type": "mistral3",
        "text_config": {"model_type": "mistral", "vocab_size": 512, "hidden_size": TEXT, "intermediate_size": 64,
                        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
                        "max_position_embeddings": 2048},
        "vision_config": {"model_type": "pixtral", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                          "num_attention_heads": 2, "head_dim": 8, "patch_size": 14, "image_size": 28},
        "image_token_index": 300,
    }), "scheduler": FLOW}),
    "Flux2Transformer2DModel": Setup("Flux2KleinPipeline", {
        "patch_size": 1, "in_channels": 128, "num_layers": 1, "num_single_layers": 1, "attention_head_dim": 16,
        "num_attention_heads": 2, "joint_attention_dim": 3 * TEXT, "timestep_guidance_channels": 32,
        "axes_dims_rope": [4, 4, 4, 4], "guidance_embeds": False,
    }, {"vae": FLUX2_VAE, "text_encoder": decoder("qwen3", "Qwen3ForCausalLM", layers=28), "scheduler": DYNAMIC_FLOW},
        note="Flux2KleinPipeline (Qwen3 text; Flux2Pipeline's Mistral3 VL encoder is not needed for coverage)"),
    "Flux3Transformer2DModel": Setup("", note="only modular pipelines (Flux3ModularPipeline) take it"),
    "DreamLiteTransformer2DModel": Setup("", note="a block of DreamLiteUNetModel: no pipeline takes it as its denoiser"),
    "GlmImageTransformer2DModel": Setup("GlmImagePipeline", note="GlmImagePipeline needs its GlmImageProcessor (the image grid of its chat template) for its autoregressive prior; a byte tokenizer gives none", transformer={
        "patch_size": 2, "in_channels": 16, "out_channels": 16, "num_layers": 2, "attention_head_dim": 16,
        "num_attention_heads": 2, "text_embed_dim": TEXT, "time_embed_dim": 32, "condition_dim": 16,
        "prior_vq_quantizer_codebook_size": 64,
    }, components={"vae": FLUX_VAE, "text_encoder": t5(), "scheduler": DYNAMIC_FLOW,
        "vision_language_encoder": Component("transformers", "GlmImageForConditionalGeneration", {
            "model_type": "glm_image",
            "text_config": {"model_type": "glm_image_text", "vocab_size": 512, "hidden_size": TEXT,
                            "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                            "num_key_value_heads": 1, "head_dim": 16, "max_position_embeddings": 2048,
                            "vision_vocab_size": 64, "pad_token_id": 256, "eos_token_id": 258},
            "vision_config": {"model_type": "glm_image_vision", "depth": 1, "hidden_size": 16, "num_heads": 2,
                              "intermediate_size": 32, "out_hidden_size": TEXT, "patch_size": 2, "image_size": 8},
            "vq_config": {"model_type": "glm_image_vqmodel", "embed_dim": 8, "num_embeddings": 64, "latent_channels": 8,
                          "in_channels": 3, "base_channels": 8, "channel_multiplier": [1, 1]},
        })}),
    "HiDreamImageTransformer2DModel": Setup("HiDreamImagePipeline", {
        "patch_size": 2, "in_channels": 4, "num_layers": 1, "num_single_layers": 1, "attention_head_dim": 8,
        "num_attention_heads": 4, "caption_channels": [TEXT, TEXT], "text_emb_dim": 2 * TEXT,
        "num_routed_experts": 2, "num_activated_experts": 1, "axes_dims_rope": [4, 2, 2], "max_resolution": [32, 32],
        "llama_layers": [0, 1],
    }, {"vae": SD_VAE, "text_encoder": clip(), "text_encoder_2": clip(), "text_encoder_3": t5(),
        "text_encoder_4": decoder("llama", "LlamaForCausalLM"), "scheduler": FLOW}),
    "HunyuanImageTransformer2DModel": Setup("HunyuanImagePipeline", {
        "in_channels": 16, "out_channels": 16, "num_attention_heads": 2, "attention_head_dim": 16, "num_layers": 1,
        "num_single_layers": 1, "num_refiner_layers": 1, "patch_size": [1, 1], "text_embed_dim": TEXT,
        "text_embed_2_dim": TEXT, "rope_axes_dim": [8, 8],
    }, {"vae": Component("diffusers", "AutoencoderKLHunyuanImage", {
        "in_channels": 3, "out_channels": 3, "latent_channels": 16, "block_out_channels": [32, 32, 32, 32],
        "layers_per_block": 1, "spatial_compression_ratio": 8, "sample_size": 64,
    }), "text_encoder": qwen25vl(), "text_encoder_2": t5(), "scheduler": FLOW}),
    "Ideogram4Transformer2DModel": Setup("Ideogram4Pipeline", {
        "in_channels": 128, "num_layers": 2, "attention_head_dim": 16, "num_attention_heads": 2,
        "intermediate_size": 64, "adaln_dim": 32, "llm_features_dim": 13 * TEXT, "mrope_section": [4, 2, 2],
    }, {"vae": FLUX2_VAE, "text_encoder": qwen3vl(cls="Qwen3VLModel", layers=36), "scheduler": FLOW},
        note="36 text layers: the pipeline reads 13 hidden states up to 35"),
    "Krea2Transformer2DModel": Setup("Krea2Pipeline", {
        "in_channels": 64, "num_layers": 2, "attention_head_dim": 16, "num_attention_heads": 2,
        "num_key_value_heads": 1, "intermediate_size": 64, "timestep_embed_dim": 32, "text_hidden_dim": TEXT,
        "num_text_layers": 12, "text_num_attention_heads": 2, "text_num_key_value_heads": 1,
        "text_intermediate_size": 64, "num_layerwise_text_blocks": 1, "num_refiner_text_blocks": 1,
        "axes_dims_rope": [4, 6, 6],
    }, {"vae": QWEN_VAE, "text_encoder": qwen3vl(cls="Qwen3VLModel", layers=36), "scheduler": DYNAMIC_FLOW},
        note="36 text layers: the pipeline reads hidden states 2, 5, …, 35"),
    "LongCatImageTransformer2DModel": Setup("LongCatImagePipeline", {
        "patch_size": 1, "in_channels": 64, "num_layers": 1, "num_single_layers": 1, "attention_head_dim": 16,
        "num_attention_heads": 2, "joint_attention_dim": TEXT, "pooled_projection_dim": TEXT, "axes_dims_rope": [4, 6, 6],
    }, {"vae": FLUX_VAE, "text_encoder": qwen25vl(), "scheduler": DYNAMIC_FLOW}),
    "Lumina2Transformer2DModel": Setup("Lumina2Pipeline", {
        "sample_size": 16, "patch_size": 2, "in_channels": 16, "hidden_size": 32, "num_layers": 2,
        "num_refiner_layers": 1, "num_attention_heads": 2, "num_kv_heads": 1, "multiple_of": 16,
        "axes_dim_rope": [4, 6, 6], "axes_lens": [300, 64, 64], "cap_feat_dim": TEXT,
    }, {"vae": FLUX_VAE, "text_encoder": gemma2(), "scheduler": FLOW}),
    "LuminaNextDiT2DModel": Setup("LuminaPipeline", {
        "sample_size": 16, "patch_size": 2, "in_channels": 4, "hidden_size": 32, "num_layers": 2,
        "num_attention_heads": 2, "num_kv_heads": 1, "multiple_of": 16, "cross_attention_dim": TEXT,
    }, {"vae": SD_VAE, "text_encoder": decoder("gemma", "GemmaModel"), "scheduler": FLOW}),
    "NucleusMoEImageTransformer2DModel": Setup("NucleusMoEImagePipeline", {
        "patch_size": 2, "in_channels": 64, "num_layers": 2, "attention_head_dim": 16, "num_attention_heads": 2,
        "joint_attention_dim": TEXT, "axes_dims_rope": [4, 6, 6], "num_experts": 4, "moe_intermediate_dim": 32,
        "capacity_factors": 8.0,
    }, {"vae": QWEN_VAE, "text_encoder": qwen3vl(layers=8), "scheduler": DYNAMIC_FLOW},
        note="8 text layers: the pipeline reads hidden state -8"),
    "OmniGenTransformer2DModel": Setup("OmniGenPipeline", note="OmniGenPipeline needs torchvision (not installed)", transformer={
        "in_channels": 4, "patch_size": 2, "hidden_size": 32, "num_attention_heads": 2, "num_key_value_heads": 2,
        "intermediate_size": 64, "num_layers": 2, "pad_token_id": 256, "vocab_size": 512,
        "max_position_embeddings": 4096, "original_max_position_embeddings": 4096, "pos_embed_max_size": 32,
        "time_step_dim": 32, "rope_scaling": {"short_factor": [1.0] * 8, "long_factor": [1.0] * 8},
    }, components={"vae": SD_VAE, "scheduler": FLOW}),
    "OvisImageTransformer2DModel": Setup("OvisImagePipeline", {
        "patch_size": 1, "in_channels": 64, "out_channels": 64, "num_layers": 1, "num_single_layers": 1,
        "attention_head_dim": 16, "num_attention_heads": 2, "joint_attention_dim": TEXT, "axes_dims_rope": [4, 6, 6],
    }, {"vae": FLUX_VAE, "text_encoder": decoder("qwen3", "Qwen3Model"), "scheduler": DYNAMIC_FLOW}),
    "PRXTransformer2DModel": Setup("PRXPipeline", note="PRXPipeline cleans prompts with ftfy (in the dev extra)", transformer={
        "in_channels": 16, "patch_size": 2, "context_in_dim": TEXT, "hidden_size": 32, "mlp_ratio": 2.0,
        "num_heads": 2, "depth": 2, "axes_dim": [8, 8],
    }, components={"vae": FLUX_VAE, "text_encoder": Component("transformers", "T5GemmaEncoderModel", {
        "model_type": "t5gemma", "is_encoder_decoder": False,
        "encoder": {"model_type": "t5gemma_module", "vocab_size": 512, "hidden_size": TEXT, "intermediate_size": 64,
                    "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
                    "max_position_embeddings": 2048, "sliding_window": 64, "layer_types": ["full_attention"] * 2},
        "decoder": {"model_type": "t5gemma_module", "vocab_size": 512, "hidden_size": TEXT, "intermediate_size": 64,
                    "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
                    "max_position_embeddings": 2048, "sliding_window": 64, "layer_types": ["full_attention"]},
        "vocab_size": 512,
    }), "scheduler": FLOW}),
    "QwenImage21Transformer2DModel": Setup("QwenImage21Pipeline", note="QwenImage21Pipeline needs a Qwen-VL processor (a chat template returning token lists); a byte tokenizer is not one", transformer={
        "patch_size": 1, "in_channels": 64, "out_channels": 64, "num_layers": 2, "attention_head_dim": 16,
        "num_attention_heads": 2, "context_in_dim": TEXT, "axes_dims_rope": [4, 6, 6],
    }, components={"vae": Component("diffusers", "AutoencoderKLQwenImage21", {
        "base_dim": 8, "decoder_base_dim": 8, "z_dim": 16, "dim_mult": [1, 2, 2], "num_res_blocks": 1,
        "temperal_downsample": [False, True], "latents_mean": [0.0] * 16, "latents_std": [1.0] * 16,
        "in_channels": 3, "out_channels": 3, "scale_factor_temporal": 2, "scale_factor_spatial": 4,
    }), "text_encoder": qwen3vl(), "scheduler": DYNAMIC_FLOW}),
}


# -- the set -------------------------------------------------------------------------------

def model_classes() -> tuple[list[str], list[tuple[str, str]]]:
    """In-scope class names, and ``(name, why)`` of the out-of-scope model classes."""
    import diffusers
    import diffusers.models.transformers as transformers_package
    import diffusers.models.unets as unets_package

    in_scope, out = [], []
    for package, kind in ((transformers_package, "transformer"), (unets_package, "unet")):
        for info in pkgutil.iter_modules(package.__path__):
            try:
                module = importlib.import_module(f"{package.__name__}.{info.name}")
            except Exception as error:  # noqa: BLE001
                out.append((f"{info.name} (module)", f"import failed: {str(error).splitlines()[0]}"))
                continue
            for name, value in vars(module).items():
                if not (isinstance(value, type) and issubclass(value, diffusers.ModelMixin)):
                    continue
                if value.__module__ != module.__name__:
                    continue
                if kind == "unet":
                    out.append((name, "UNet (diffusers.models.unets): the UNet families' domain"))
                elif name.endswith("2DModel"):
                    in_scope.append(name)
                elif "3D" in name or "Video" in name:
                    out.append((name, "3-D / video transformer"))
                elif "1D" in name or "Audio" in name or "Music" in name:
                    out.append((name, "1-D / audio transformer"))
                else:
                    out.append((name, "not a 2-D image transformer by name (omni / protein / prior / temporal / other)"))
    return sorted(set(in_scope)), sorted(set(out))


def pipelines_taking(class_name: str) -> list[str]:
    """Top-level diffusers pipeline classes whose ``transformer`` annotation names ``class_name``."""
    import diffusers

    found = []
    for name in dir(diffusers):
        if not name.endswith("Pipeline"):
            continue
        try:
            value = getattr(diffusers, name)
            parameter = inspect.signature(value.__init__).parameters.get("transformer")
        except Exception:  # noqa: BLE001
            continue
        if parameter is None:
            continue
        annotation = parameter.annotation
        text = annotation if isinstance(annotation, str) else str(getattr(annotation, "__name__", annotation))
        if class_name in str(text).replace("|", " ").replace(".", " ").split():
            found.append(name)
    return sorted(found)


# -- one class -----------------------------------------------------------------------------

def build(class_name: str, setup: Setup) -> Any:
    """The small pipeline of ``class_name`` (seeded random weights)."""
    import diffusers

    from autosel.models.standin import build_pipeline

    if setup.tiny:
        from autosel.models.tiny import build_tiny_pipeline

        pipeline = build_tiny_pipeline(setup.tiny)
        if class_name == "Transformer2DModel":  # the same weights in the legacy class
            legacy = diffusers.Transformer2DModel.from_config(dict(pipeline.transformer.config))
            legacy.load_state_dict(pipeline.transformer.state_dict())
            pipeline.register_modules(transformer=legacy.eval())
        if "vae" in setup.components:
            from diffusers.image_processor import VaeImageProcessor

            component = setup.components["vae"]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                vae = getattr(diffusers, component.class_name).from_config(dict(component.config)).eval()
            pipeline.register_modules(vae=vae)
            pipeline.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
            pipeline.image_processor = VaeImageProcessor(vae_scale_factor=pipeline.vae_scale_factor)
        return pipeline
    if setup.twin:
        from autosel.models.twins import TWIN_SPECS

        if setup.twin in TWIN_SPECS:
            return build_pipeline(TWIN_SPECS[setup.twin], seed=0)
        raise LookupError(f"setup: twin {setup.twin} is not in autosel.models.twins")
    pipeline_class = getattr(diffusers, setup.pipeline)
    components: dict[str, Component] = {"transformer": Component("diffusers", class_name, setup.transformer)}
    for name, parameter in inspect.signature(pipeline_class.__init__).parameters.items():
        if name in ("self", "transformer") or parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
            continue
        annotation = str(parameter.annotation)
        if name in setup.components:
            components[name] = setup.components[name]
        elif "tokenizer" in name or "processor" in name or "Tokenizer" in annotation or "Processor" in annotation:
            components[name] = tok()
        elif parameter.default is not inspect.Parameter.empty:
            continue  # optional: left at its default
        elif name == "unconditional_transformer":
            components[name] = components["transformer"]
        else:
            raise LookupError(f"setup: no small component for {setup.pipeline}'s '{name}' ({annotation})")
    return build_pipeline(PipelineSpec(setup.pipeline, components), seed=0)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def try_class(class_name: str, verbose: bool = False) -> dict[str, Any]:
    """Build, record, discover and capture; ``{status, step, reason, ...}``."""
    torch.set_num_threads(1)
    from autosel.catalog import measure_catalogue
    from autosel.config import ExtractionSection
    from autosel.denoiser import Denoiser, DenoiserRun
    from autosel.models.families import Architecture, Generic

    setup = SETUPS.get(class_name)
    result: dict[str, Any] = {"class": class_name, "status": "fail", "step": "setup", "reason": "", "points": 0,
                              "blocks": 0, "pipeline": setup.pipeline if setup else "", "note": setup.note if setup else ""}
    step = "setup"
    try:
        if setup is None:
            raise LookupError("setup: no small setup written for this class in SETUPS")
        step = "pipeline"
        if not setup.pipeline:
            raise LookupError(f"no diffusers pipeline class takes it as its transformer ({setup.note})")
        step = "build"
        pipeline = build(class_name, setup)
        step = "record"
        config = {**pipeline.transformer.config, "_class_name": class_name}
        source = f"coverage: small {class_name} in {type(pipeline).__name__}"
        if class_name in ADAPTER_CLASSES:
            architecture = Generic(config, source=source)
        else:
            architecture = Architecture.from_config(config, source=source)
        architecture = architecture.bind_pipeline(lambda: pipeline)
        step = "discover"
        size = setup.image_size
        catalogue = measure_catalogue(architecture, size)
        outs = [point for point in catalogue if point.kind == "vit-block-out"]
        result["points"], result["blocks"] = len(catalogue), len(outs)
        if not outs:
            raise AssertionError("the catalogue has no vit-block*-out point")
        step = "capture"
        run = DenoiserRun(Denoiser(pipeline, device="cpu", architecture=architecture), ExtractionSection(image_size=size))
        images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
        latents, noise = run.latents_and_noise(images)
        ids = [point.id for point in outs]
        features = run.capture_at(latents, noise, TIMESTEP, ids)
        for point in outs:
            value = features[point.id]
            expected = (2, point.channels, point.height, point.width)
            if tuple(value.shape) != expected:
                raise AssertionError(f"{point.id} has shape {tuple(value.shape)}, the catalogue says {expected}")
            if not torch.isfinite(value).all():
                raise AssertionError(f"{point.id} has non-finite values")
        first = outs[0]
        result.update(status="works", step="", grid=f"{first.channels}x{first.height}x{first.width}")
    except BaseException as error:  # noqa: BLE001 - every failure is a row of the table
        result["step"] = step
        result["reason"] = _first_line(error)
        if verbose:
            traceback.print_exc()
    return result


def _child(class_name: str, verbose: bool, queue: Any) -> None:
    queue.put(try_class(class_name, verbose))


def run_isolated(class_name: str, verbose: bool, limit: float) -> dict[str, Any]:
    context = mp.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_child, args=(class_name, verbose, queue))
    started = time.monotonic()
    process.start()
    result = None
    while time.monotonic() - started < limit:
        try:
            result = queue.get(timeout=0.5)
            break
        except Exception:  # noqa: BLE001 - queue.Empty
            if not process.is_alive():
                break
    if result is None:
        if process.is_alive():
            process.kill()
            reason = f"timed out after {limit:.0f} s"
        else:
            reason = f"process died (exit code {process.exitcode})"
        result = {"class": class_name, "status": "fail", "step": "?", "reason": reason, "points": 0, "blocks": 0,
                  "pipeline": SETUPS.get(class_name, Setup()).pipeline, "note": ""}
    process.join(5)
    result["seconds"] = time.monotonic() - started
    return result


# -- report --------------------------------------------------------------------------------

def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def report(results: list[dict[str, Any]], out_of_scope: list[tuple[str, str]], command: str, seconds: float) -> str:
    import diffusers

    works = [r for r in results if r["status"] == "works"]
    with_pipeline = [r for r in results if r["step"] != "pipeline"]
    works_with_pipeline = [r for r in with_pipeline if r["status"] == "works"]
    lines = [
        "# Generic-path coverage of the installed diffusers",
        "",
        f"Reproduce: `{command}` (CPU, {seconds:.0f} s wall).",
        "",
        f"- diffusers {diffusers.__version__}, torch {torch.__version__}",
        "- set: every `ModelMixin` class defined in `diffusers.models.transformers` whose name ends in `2DModel`"
        " (2-D image transformers); other model classes listed at the end as out of scope",
        "- per class: a small instance from its own constructor in a diffusers pipeline class that takes it"
        " (small text encoders, byte tokenizers, small VAE), then the generic path: record the call"
        " (`bind_pipeline`), discover (`measure_catalogue` at 64 px), capture every `vit-block*-out`"
        f" at t={TIMESTEP} on 2 images (shapes against the catalogue, finite values); classes with an"
        " adapter have the family forced to `generic`",
        f"- **works: {len(works)} / {len(results)} = {100 * len(works) / max(len(results), 1):.0f}%** of the 2-D image"
        f" transformer classes; {len(works_with_pipeline)} / {len(with_pipeline)} ="
        f" {100 * len(works_with_pipeline) / max(len(with_pipeline), 1):.0f}% of those a diffusers pipeline class takes",
        "",
        "| class | pipeline | result | failed at | blocks | points | reason / note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        reason = r["reason"] if r["status"] != "works" else r.get("note", "")
        if r["status"] != "works" and r.get("note"):
            reason = f"{reason} ({r['note']})" if r["note"] not in reason else reason
        lines.append(
            f"| {r['class']}{' (adapter, forced generic)' if r['class'] in ADAPTER_CLASSES else ''} | {r['pipeline'] or '-'}"
            f" | {r['status']} | {r['step'] or ''} | {r['blocks'] or ''} | {r['points'] or ''} | {_cell(reason)} |"
        )
    failures = [r for r in results if r["status"] != "works"]
    if failures:
        lines += ["", "## Failures", ""]
        for r in failures:
            lines.append(f"- **{r['class']}** ({r['step']}): {_cell(r['reason'])}")
    lines += ["", "## Out of scope", "", "| class | why |", "|---|---|"]
    lines += [f"| {name} | {why} |" for name, why in out_of_scope]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="class names to try (default: every in-scope class)")
    parser.add_argument("--limit", type=float, default=TIME_LIMIT_S, help="seconds per class")
    parser.add_argument("--out", default=str(ROOT / "results" / "coverage.md"))
    parser.add_argument("-v", "--verbose", action="store_true", help="print tracebacks")
    parser.add_argument("--no-fork", action="store_true", help="run in this process (debugging)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import diffusers  # noqa: F401 - imported once, before the forks

    import autosel.catalog  # noqa: F401
    import autosel.denoiser  # noqa: F401
    import autosel.models.standin  # noqa: F401

    in_scope, out_of_scope = model_classes()
    for name in in_scope:
        setup = SETUPS.get(name)
        if setup and setup.pipeline and name not in ADAPTER_CLASSES and setup.pipeline not in pipelines_taking(name):
            print(f"warning: {setup.pipeline} does not name {name} in its annotation", file=sys.stderr)
    names = args.only or in_scope
    started = time.monotonic()
    results = []
    for name in names:
        result = try_class(name, args.verbose) if args.no_fork else run_isolated(name, args.verbose, args.limit)
        result.setdefault("seconds", 0.0)
        print(f"{name:40s} {result['status']:6s} {result['step']:9s} {result['seconds']:5.1f}s {result['reason']}",
              file=sys.stderr, flush=True)
        results.append(result)
    seconds = time.monotonic() - started
    command = ".venv/bin/python experiments/diffusers_coverage.py" + (f" --only {' '.join(args.only)}" if args.only else "")
    text = report(results, out_of_scope, command, seconds)
    print(text)
    if not args.only:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"written: {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
