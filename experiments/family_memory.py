"""Weights each registry model puts on the GPU in bf16: the denoiser (counted from the shipped
config, built on the meta device), the float32 VAE, and the largest text encoder, which only
visits the GPU while the prompt is encoded (once per prompt) and then goes back to the CPU.

Text encoders are built from their published configs on the meta device (no download); for the
generic-path models (Qwen-Image, Z-Image, …) every component comes from the shipped pipeline config.
Run: python experiments/family_memory.py  (prints a Markdown table; a few seconds, no GPU).
"""

from __future__ import annotations

import json
from importlib import resources

import torch

from autosel.models import REGISTRY
from autosel.models.architecture import shipped_architecture

GIB = 2**30


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def text_encoders() -> dict[str, int]:
    """Parameter counts of the text encoders the families use, from their public configs."""
    from transformers import BertConfig, BertModel, CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    configs = {
        "CLIP-L": (CLIPTextModel, CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)),
        "CLIP-G": (CLIPTextModel, CLIPTextConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20)),
        "T5-v1.1-XXL": (T5EncoderModel, T5Config(vocab_size=32128, d_model=4096, d_ff=10240, d_kv=64, num_layers=24, num_heads=64, feed_forward_proj="gated-gelu")),
        "mT5-XL": (T5EncoderModel, T5Config(vocab_size=250112, d_model=2048, d_ff=5120, d_kv=64, num_layers=24, num_heads=32, feed_forward_proj="gated-gelu")),
        "CN-CLIP (BERT-large)": (BertModel, BertConfig(vocab_size=47020, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)),
    }
    counts = {}
    for name, (cls, config) in configs.items():
        with torch.device("meta"):
            counts[name] = _count(cls(config))
    return counts


LARGEST_TEXT = {
    "sd": "CLIP-L", "sdxl": "CLIP-G", "pixart": "T5-v1.1-XXL", "sd3": "T5-v1.1-XXL", "flux": "T5-v1.1-XXL",
    "hunyuan": "mT5-XL", "if": "T5-v1.1-XXL",
}
VAE_PARAMS = 83_653_863  # AutoencoderKL of SD/SDXL (the 16-channel SD3/FLUX VAE is within 0.1 %)


def pipeline_counts(name: str) -> tuple[int, int, tuple[str, int]]:
    """(denoiser, VAE, (largest text encoder class, params)) of a generic-path registry model,
    every component built at full size from its shipped config on the meta device."""
    import diffusers
    import transformers

    document = json.loads(resources.files("autosel.models").joinpath("configs", f"{name}.json").read_text())
    denoiser = vae = 0
    largest = ("", 0)
    for component, entry in document["components"].items():
        if entry is None or entry[0] is None or "tokenizer" in component or "scheduler" in component:
            continue
        library, class_name, config = entry
        config = {key: value for key, value in config.items() if not key.startswith("_")}
        with torch.device("meta"):
            if library == "diffusers":
                count = _count(getattr(diffusers, class_name).from_config(config))
            else:
                count = _count(getattr(transformers, class_name)(transformers.AutoConfig.for_model(**config)))
        if component in ("transformer", "unet"):
            denoiser = count
        elif component == "vae":
            vae = count
        elif count > largest[1]:
            largest = (class_name, count)
    return denoiser, vae, largest


def main() -> None:
    texts = text_encoders()
    print("| model | family | denoiser params | denoiser bf16 GiB | + VAE fp32 GiB | largest text encoder (bf16 GiB, during encoding only) |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for name, spec in REGISTRY.items():
        if spec.source != "registry" or spec.architecture is None:
            continue
        if spec.family == "generic":
            params, vae, (text, text_params) = pipeline_counts(spec.architecture)
            print(f"| `{name}` | {spec.family} | {params / 1e9:.2f} B | {2 * params / GIB:.1f} | {4 * vae / GIB:.2f} "
                  f"| {text}: {text_params / 1e9:.2f} B, {2 * text_params / GIB:.1f} |")
            continue
        params = _count(shipped_architecture(spec.architecture).build_denoiser("meta"))
        text = LARGEST_TEXT[spec.family]
        print(f"| `{name}` | {spec.family} | {params / 1e9:.2f} B | {2 * params / GIB:.1f} | {4 * VAE_PARAMS / GIB:.2f} "
              f"| {text}: {texts[text] / 1e9:.2f} B, {2 * texts[text] / GIB:.1f} |")


if __name__ == "__main__":
    main()
