"""Random-weight twins of the 2025–26 models, built from config (nothing downloaded).

Each twin is the model's own diffusers pipeline class with a small denoiser of the model's
class, a small VAE of its class and small text encoders of its classes, seeded; it goes
through the generic path (:mod:`autosel.models.families.generic`), which has no code for any
of them. ``save_pretrained`` writes each as the real pipeline's folder.
"""

from __future__ import annotations

from typing import Any

from autosel.models.standin import Component, PipelineSpec

TEXT_DIM = 32
FLUX_VAE: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3, "block_out_channels": [16, 32, 32], "layers_per_block": 1,
    "latent_channels": 16, "norm_num_groups": 8, "sample_size": 64, "scaling_factor": 0.3611, "shift_factor": 0.1159,
    "use_quant_conv": False, "use_post_quant_conv": False,
}
FLUX_VAE_F8: dict[str, Any] = {
    **FLUX_VAE, "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [16, 16, 32, 32],
}
"""FLUX's VAE with its real 8× downsampling, for pipelines that take the factor as a constant."""
DYNAMIC_FLOW: dict[str, Any] = {
    "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15,
    "base_image_seq_len": 256, "max_image_seq_len": 4096,
}


def _tokenizer(length: int) -> Component:
    return Component("transformers", "PreTrainedTokenizerFast", {"model_max_length": length})


def _decoder_text(model_type: str, class_name: str, **extra: Any) -> Component:
    config = {
        "model_type": model_type, "vocab_size": 512, "hidden_size": TEXT_DIM, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
        "max_position_embeddings": 1024, "pad_token_id": 256, "bos_token_id": 257, "eos_token_id": 258, **extra,
    }
    return Component("transformers", class_name, config)


def qwen25vl_text(width: int = TEXT_DIM, max_positions: int = 1024) -> Component:
    """A small Qwen2.5-VL (Qwen-Image's text encoder) of hidden size ``width``: its vision tower
    is built but never run on a text prompt."""
    return Component("transformers", "Qwen2_5_VLForConditionalGeneration", {
        "model_type": "qwen2_5_vl",
        "text_config": {
            "model_type": "qwen2_5_vl_text", "vocab_size": 512, "hidden_size": width, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
            "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}, "max_position_embeddings": max_positions,
        },
        "vision_config": {"depth": 1, "hidden_size": 16, "out_hidden_size": width, "num_heads": 2,
                          "intermediate_size": 32, "fullatt_block_indexes": [0]},
        "vocab_size": 512, "image_token_id": 300, "video_token_id": 301, "vision_start_token_id": 302,
    })


def _t5_text() -> Component:
    return Component("transformers", "T5EncoderModel", {
        "model_type": "t5", "vocab_size": 512, "d_model": TEXT_DIM, "d_kv": 16, "d_ff": 64, "num_layers": 2,
        "num_heads": 2, "relative_attention_num_buckets": 8, "pad_token_id": 256, "eos_token_id": 258,
        "decoder_start_token_id": 256,
    })


TWIN_DESCRIPTIONS: dict[str, str] = {
    "tiny-qwen-image-random": "Qwen-Image-like MMDiT (Qwen2.5-VL text, 3-D VAE), generic path, random weights",
    "tiny-z-image-random": "Z-Image-like single-stream DiT (Qwen3 text), generic path, random weights",
    "tiny-chroma-random": "Chroma-like MMDiT (FLUX layout, T5 only), generic path, random weights",
    "tiny-sana-random": "Sana-like linear-attention DiT (Gemma 2, DC-AE, DPM-Solver on flow sigmas), generic, random",
    "tiny-lumina2-random": "Lumina-Image-2.0-like unified DiT (Gemma 2, caption/noise refiners), generic, random",
    "tiny-flux2-random": "FLUX.2-dev-like MMDiT (Mistral 3 text, 2x2-patched VAE latents), generic, random",
    "tiny-cogview4-random": "CogView4-like DiT (GLM text, unshifted t with shifted sigma), generic, random",
}
"""One line per twin for ``autosel models`` (the registry lists every twin of :data:`TWIN_SPECS`)."""

TWIN_SPECS: dict[str, PipelineSpec] = {
    "tiny-qwen-image-random": PipelineSpec("QwenImagePipeline", {
        "transformer": Component("diffusers", "QwenImageTransformer2DModel", {
            "patch_size": 2, "in_channels": 64, "out_channels": 16, "num_layers": 2, "attention_head_dim": 16,
            "num_attention_heads": 2, "joint_attention_dim": TEXT_DIM, "axes_dims_rope": [4, 6, 6],
        }),
        "vae": Component("diffusers", "AutoencoderKLQwenImage", {
            "base_dim": 8, "z_dim": 16, "dim_mult": [1, 2, 2], "num_res_blocks": 1, "temperal_downsample": [False, True],
        }),
        "scheduler": Component("diffusers", "FlowMatchEulerDiscreteScheduler", {
            "num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": True, "base_shift": 0.5,
            "max_shift": 0.9, "base_image_seq_len": 256, "max_image_seq_len": 8192, "shift_terminal": 0.02,
        }),
        "text_encoder": qwen25vl_text(),
        "tokenizer": _tokenizer(1024),
    }),
    "tiny-z-image-random": PipelineSpec("ZImagePipeline", {
        "transformer": Component("diffusers", "ZImageTransformer2DModel", {
            "all_patch_size": [2], "all_f_patch_size": [1], "in_channels": 16, "dim": 32, "n_layers": 2,
            "n_refiner_layers": 1, "n_heads": 2, "n_kv_heads": 2, "cap_feat_dim": TEXT_DIM, "axes_dims": [4, 6, 6],
            "axes_lens": [256, 64, 64],
        }),
        "vae": Component("diffusers", "AutoencoderKL", FLUX_VAE),
        "scheduler": Component("diffusers", "FlowMatchEulerDiscreteScheduler", {"num_train_timesteps": 1000, "shift": 3.0}),
        "text_encoder": _decoder_text("qwen3", "Qwen3Model"),
        "tokenizer": _tokenizer(512),
    }),
    "tiny-chroma-random": PipelineSpec("ChromaPipeline", {
        "transformer": Component("diffusers", "ChromaTransformer2DModel", {
            "patch_size": 1, "in_channels": 64, "num_layers": 1, "num_single_layers": 2, "attention_head_dim": 16,
            "num_attention_heads": 2, "joint_attention_dim": TEXT_DIM, "axes_dims_rope": [4, 6, 6],
            "approximator_num_channels": 16, "approximator_hidden_dim": 32, "approximator_layers": 1,
        }),
        "vae": Component("diffusers", "AutoencoderKL", FLUX_VAE),
        "scheduler": Component("diffusers", "FlowMatchEulerDiscreteScheduler", DYNAMIC_FLOW),
        "text_encoder": _t5_text(),
        "tokenizer": _tokenizer(512),
        "image_encoder": Component("", "", None),
        "feature_extractor": Component("", "", None),
    }),
    "tiny-sana-random": PipelineSpec("SanaPipeline", {
        "transformer": Component("diffusers", "SanaTransformer2DModel", {
            "in_channels": 8, "out_channels": 8, "num_attention_heads": 2, "attention_head_dim": 16, "num_layers": 2,
            "num_cross_attention_heads": 2, "cross_attention_head_dim": 16, "cross_attention_dim": 32,
            "caption_channels": TEXT_DIM, "mlp_ratio": 2.5, "sample_size": 16, "patch_size": 1,
            "norm_elementwise_affine": False, "norm_eps": 1e-6,
        }),
        "vae": Component("diffusers", "AutoencoderDC", {
            "in_channels": 3, "latent_channels": 8, "attention_head_dim": 8,
            "encoder_block_types": ["ResBlock", "ResBlock", "EfficientViTBlock"],
            "decoder_block_types": ["ResBlock", "ResBlock", "EfficientViTBlock"],
            "encoder_block_out_channels": [8, 16, 32], "decoder_block_out_channels": [8, 16, 32],
            "encoder_layers_per_block": [1, 1, 1], "decoder_layers_per_block": [1, 1, 1],
            "encoder_qkv_multiscales": [[], [], [5]], "decoder_qkv_multiscales": [[], [], [5]],
            "upsample_block_type": "interpolate", "downsample_block_type": "Conv",
            "decoder_norm_types": ["batch_norm", "batch_norm", "rms_norm"], "decoder_act_fns": ["relu", "relu", "silu"],
            "scaling_factor": 0.41407,
        }),
        "scheduler": Component("diffusers", "DPMSolverMultistepScheduler", {
            "num_train_timesteps": 1000, "algorithm_type": "dpmsolver++", "solver_order": 2, "solver_type": "midpoint",
            "prediction_type": "flow_prediction", "use_flow_sigmas": True, "flow_shift": 3.0, "beta_schedule": "linear",
            "beta_start": 0.0001, "beta_end": 0.02, "final_sigmas_type": "zero", "lower_order_final": True,
        }),
        "text_encoder": _decoder_text("gemma2", "Gemma2Model", final_logit_softcapping=30.0, attn_logit_softcapping=50.0,
                                      query_pre_attn_scalar=16, sliding_window=64),
        "tokenizer": _tokenizer(300),
    }),
    "tiny-lumina2-random": PipelineSpec("Lumina2Pipeline", {
        "transformer": Component("diffusers", "Lumina2Transformer2DModel", {
            "sample_size": 16, "patch_size": 2, "in_channels": 16, "hidden_size": 32, "num_layers": 2,
            "num_refiner_layers": 1, "num_attention_heads": 2, "num_kv_heads": 1, "multiple_of": 16,
            "norm_eps": 1e-5, "scaling_factor": 1.0, "axes_dim_rope": [4, 6, 6], "axes_lens": [300, 64, 64],
            "cap_feat_dim": TEXT_DIM,
        }),
        "scheduler": Component("diffusers", "FlowMatchEulerDiscreteScheduler", {
            "num_train_timesteps": 1000, "shift": 6.0, "use_dynamic_shifting": False,
        }),
        "vae": Component("diffusers", "AutoencoderKL", FLUX_VAE_F8),
        "text_encoder": _decoder_text("gemma2", "Gemma2Model", final_logit_softcapping=30.0, attn_logit_softcapping=50.0,
                                      query_pre_attn_scalar=16, sliding_window=64),
        "tokenizer": _tokenizer(256),
    }),
    "tiny-flux2-random": PipelineSpec("Flux2Pipeline", {
        "scheduler": Component("diffusers", "FlowMatchEulerDiscreteScheduler", DYNAMIC_FLOW),
        "vae": Component("diffusers", "AutoencoderKLFlux2", {
            "in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * 3,
            "up_block_types": ["UpDecoderBlock2D"] * 3, "block_out_channels": [16, 32, 32], "layers_per_block": 1,
            "latent_channels": 32, "norm_num_groups": 8, "sample_size": 64, "use_quant_conv": True,
            "use_post_quant_conv": True, "batch_norm_eps": 1e-4, "patch_size": [2, 2],
        }),
        # the pipeline stacks the text encoder's hidden states 10, 20 and 30: it needs 31 layers
        "text_encoder": Component("transformers", "Mistral3ForConditionalGeneration", {
            "model_type": "mistral3",
            "text_config": {
                "model_type": "mistral", "vocab_size": 512, "hidden_size": TEXT_DIM, "intermediate_size": 64,
                "num_hidden_layers": 31, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
                "max_position_embeddings": 1024, "pad_token_id": 256, "bos_token_id": 257, "eos_token_id": 258,
            },
            "vision_config": {
                "model_type": "pixtral", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                "num_attention_heads": 2, "head_dim": 8, "image_size": 64, "patch_size": 16,
            },
            "image_token_index": 300, "spatial_merge_size": 2, "multimodal_projector_bias": False,
        }),
        "tokenizer": _tokenizer(512),
        "transformer": Component("diffusers", "Flux2Transformer2DModel", {
            "patch_size": 1, "in_channels": 128, "num_layers": 1, "num_single_layers": 2, "attention_head_dim": 16,
            "num_attention_heads": 2, "joint_attention_dim": 3 * TEXT_DIM, "timestep_guidance_channels": 32,
            "mlp_ratio": 3.0, "axes_dims_rope": [4, 4, 4, 4], "rope_theta": 2000, "guidance_embeds": True,
        }),
    }),
    "tiny-cogview4-random": PipelineSpec("CogView4Pipeline", {
        "transformer": Component("diffusers", "CogView4Transformer2DModel", {
            "patch_size": 2, "in_channels": 16, "out_channels": 16, "num_layers": 2, "attention_head_dim": 16,
            "num_attention_heads": 2, "text_embed_dim": TEXT_DIM, "time_embed_dim": 32, "condition_dim": 16,
            "pos_embed_max_size": 64, "sample_size": 32, "rope_axes_dim": [16, 16],
        }),
        "vae": Component("diffusers", "AutoencoderKL", {**FLUX_VAE, "scaling_factor": 1.0, "shift_factor": 0.0}),
        "scheduler": Component("diffusers", "FlowMatchEulerDiscreteScheduler", {
            "num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": True, "base_shift": 0.25,
            "max_shift": 0.75, "base_image_seq_len": 256, "max_image_seq_len": 4096, "time_shift_type": "linear",
        }),
        "text_encoder": _decoder_text("glm", "GlmModel", partial_rotary_factor=0.5),
        "tokenizer": _tokenizer(1024),
    }),
}
"""The generic-path twins: one per registry model of the generic path (see the registry)."""

