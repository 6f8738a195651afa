"""Pipelines assembled from component configs, for the generic path: twins and stand-ins.

A *twin* is a complete small pipeline of a diffusers class with seeded random weights (tests,
random-weight controls). A *stand-in* is the same assembly for a real model's configs with the
denoiser and VAE on the meta device and small random text encoders that keep the real hidden
size: the pipeline's own ``__call__`` then yields the denoiser's call with the real shapes, so
the catalogue works offline and reads no weights. Tokenizers are made offline (a byte-level
vocabulary): only the number of tokens a prompt becomes matters for shapes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

TOKENIZER_SPECIALS = ("<pad>", "<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "[gMASK]", "<sop>")
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TEXT_LAYERS = 2
"""Layers kept in a stand-in text encoder (pipelines read the last or second-to-last state)."""


@dataclass(frozen=True)
class Component:
    """One pipeline component: library (``diffusers``/``transformers``), class and config.

    ``config`` is ``None`` for optional components left out (safety checkers, image encoders).
    For tokenizers it holds ``model_max_length`` (and nothing else is read).
    """

    library: str
    class_name: str
    config: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class PipelineSpec:
    """A pipeline class and its components, as a ``model_index.json`` and configs describe it."""

    pipeline_class: str
    components: Mapping[str, Component] = field(default_factory=dict)

    @property
    def denoiser(self) -> tuple[str, Component]:
        """``(name, component)`` of the denoiser (``transformer``, else ``unet``)."""
        for name in ("transformer", "unet"):
            if name in self.components:
                return name, self.components[name]
        raise KeyError("no transformer or unet component")


def byte_tokenizer(model_max_length: int = 512):
    """A fast tokenizer whose vocabulary is the 256 byte symbols and a few special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: index for index, symbol in enumerate(symbols)}
    for special in TOKENIZER_SPECIALS:
        vocab[special] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(TOKENIZER_SPECIALS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        model_max_length=model_max_length, padding_side="right",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


VOCAB = 256 + len(TOKENIZER_SPECIALS)
"""The byte tokenizer's vocabulary size."""

_LAYER_KEYS = ("num_hidden_layers", "num_layers", "n_layers", "n_layer", "depth", "num_decoder_layers")
_WIDTH_KEYS = ("intermediate_size", "d_ff", "ffn_hidden_size", "n_inner")


def shrink_text_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A text encoder config with the real hidden size and few, narrow layers: its outputs have
    the real shapes, its weights a small fraction of the real ones (any nesting: VL models)."""
    shrunk = copy.deepcopy(dict(config))

    def walk(section: dict[str, Any]) -> None:
        layers = None
        for key in _LAYER_KEYS:
            if isinstance(section.get(key), int):
                section[key] = min(section[key], TEXT_LAYERS)
                layers = section[key]
        for key in _WIDTH_KEYS:
            if isinstance(section.get(key), int):
                section[key] = min(section[key], 64)
        if isinstance(section.get("vocab_size"), int):
            section["vocab_size"] = max(VOCAB, 512)
        for key in list(section):
            if key.endswith("_token_id") and isinstance(section[key], int) and section[key] >= 512:
                section[key] = 0
        if layers is not None and isinstance(section.get("layer_types"), list):
            section["layer_types"] = section["layer_types"][:layers]
        for key in ("max_window_layers",):
            if isinstance(section.get(key), int):
                section[key] = min(section[key], TEXT_LAYERS)
        if isinstance(section.get("fullatt_block_indexes"), list):
            section["fullatt_block_indexes"] = [i for i in section["fullatt_block_indexes"] if i < TEXT_LAYERS]
        for value in section.values():
            if isinstance(value, dict):
                walk(value)

    walk(shrunk)
    return shrunk


def build_pipeline(spec: PipelineSpec, seed: int = 0, meta: bool = False, shrink_text: bool = False) -> Any:
    """The pipeline of ``spec`` with seeded random weights.

    Args:
        meta: the denoiser and the VAE on the meta device (a stand-in: shapes only).
        shrink_text: text encoders with few narrow layers (:func:`shrink_text_config`).
    """
    import diffusers
    import transformers

    components: dict[str, Any] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, component in spec.components.items():
            if component.config is None:
                components[name] = None
                continue
            config = {k: v for k, v in component.config.items() if not k.startswith("_")}
            if "tokenizer" in name or component.class_name.endswith(("Tokenizer", "TokenizerFast", "Processor")):
                components[name] = byte_tokenizer(int(config.get("model_max_length", 512)))
            elif component.library == "diffusers" and "scheduler" in component.class_name.lower():
                components[name] = getattr(diffusers, component.class_name).from_config(config)
            elif component.library == "diffusers":
                model_class = getattr(diffusers, component.class_name)
                with torch.device("meta" if meta else "cpu"):
                    components[name] = model_class.from_config(config).eval()
            else:
                if shrink_text:
                    config = shrink_text_config(config)
                model_class = getattr(transformers, component.class_name)
                model_config = transformers.AutoConfig.for_model(**config)
                components[name] = model_class(model_config).eval()
    pipeline = getattr(diffusers, spec.pipeline_class)(**components)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def spec_of_pipeline(pipeline: Any) -> PipelineSpec:
    """The :class:`PipelineSpec` of a loaded pipeline (its components' own configs)."""
    components = {}
    for name, value in pipeline.components.items():
        if value is None:
            components[name] = Component("", "", None)
            continue
        library = type(value).__module__.split(".")[0]
        config = getattr(value, "config", None)
        if hasattr(config, "to_dict"):
            config = config.to_dict()
        elif config is not None:
            config = dict(config)
        if config is None:  # tokenizers
            config = {"model_max_length": int(min(getattr(value, "model_max_length", 512), 4096))}
        components[name] = Component(library, type(value).__name__, config)
    return PipelineSpec(type(pipeline).__name__, components)
