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


def _t5_text() -> Component:
    return Component("transformers", "T5EncoderModel", {
        "model_type": "t5", "vocab_size": 512, "d_model": TEXT_DIM, "d_kv": 16, "d_ff": 64, "num_layers": 2,
        "num_heads": 2, "relative_attention_num_buckets": 8, "pad_token_id": 256, "eos_token_id": 258,
        "decoder_start_token_id": 256,
    })


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
        "text_encoder": Component("transformers", "Qwen2_5_VLForConditionalGeneration", {
            "model_type": "qwen2_5_vl",
            "text_config": {
                "model_type": "qwen2_5_vl_text", "vocab_size": 512, "hidden_size": TEXT_DIM, "intermediate_size": 64,
                "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
                "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}, "max_position_embeddings": 1024,
            },
            "vision_config": {"depth": 1, "hidden_size": 16, "out_hidden_size": TEXT_DIM, "num_heads": 2,
                              "intermediate_size": 32, "fullatt_block_indexes": [0]},
            "vocab_size": 512, "image_token_id": 300, "video_token_id": 301, "vision_start_token_id": 302,
        }),
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
}
"""The generic-path twins: one per registry model of the generic path (see the registry)."""
