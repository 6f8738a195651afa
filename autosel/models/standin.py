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
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from autosel.errors import NotAPipelineError

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
        """``(name, component)`` of the denoiser (see :func:`denoiser_component`)."""
        name = denoiser_component(self.components)
        if name is None:
            raise KeyError("no transformer or unet component")
        return name, self.components[name]


DENOISER_COMPONENTS = ("transformer", "unet")
"""Pipeline components that can hold the denoiser, the first present one winning."""


def denoiser_component(components: Iterable[str]) -> str | None:
    """Which of a pipeline's ``components`` (names) is its denoiser, or ``None``: the one place
    that decides it, for loaded pipelines, folders, cached and shipped configs alike."""
    present = set(components)
    return next((name for name in DENOISER_COMPONENTS if name in present), None)


def byte_tokenizer(model_max_length: int = 512):
    """A fast tokenizer whose vocabulary is the 256 byte symbols and a few special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: index for index, symbol in enumerate(symbols)}
    for special in TOKENIZER_SPECIALS:
        vocab[special] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(TOKENIZER_SPECIALS))
    # a leading <s>, as most real tokenizers add one: an empty prompt is one token, not none
    # (pipelines that pad to a multiple of a length would otherwise pass an empty sequence)
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        model_max_length=model_max_length, padding_side="right",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


VOCAB = 256 + len(TOKENIZER_SPECIALS)
"""The byte tokenizer's vocabulary size."""

VOCAB_SIZE = 512
"""Vocabulary of a shrunk text encoder (the byte tokenizer's ids, and spare ids for the config's
special tokens)."""

_LAYER_KEYS = ("num_hidden_layers", "num_layers", "n_layers", "n_layer", "depth", "num_decoder_layers")
_WIDTH_KEYS = ("intermediate_size", "d_ff", "ffn_hidden_size", "n_inner")


def layers_read(pipeline_class: str) -> int:
    """Text-encoder layers a pipeline class reads by default: one past the deepest index among
    the integer defaults of its prompt-encoding parameters named ``*layer*`` (FLUX.2 reads
    hidden states 10, 20 and 30); 0 when it names none (it reads the last or second-to-last)."""
    import inspect

    import diffusers

    pipeline = getattr(diffusers, pipeline_class, None)
    deepest = -1
    for name in dir(pipeline) if pipeline is not None else ():
        if name != "__call__" and "prompt" not in name:
            continue
        method = getattr(pipeline, name, None)
        if not callable(method):
            continue
        try:
            parameters = inspect.signature(method).parameters.values()
        except (TypeError, ValueError):
            continue
        for parameter in parameters:
            default = parameter.default
            values = default if isinstance(default, (tuple, list)) else (default,)
            if "layer" in parameter.name and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                deepest = max([deepest, *values])
    return deepest + 1


def shrink_text_config(config: Mapping[str, Any], min_layers: int = TEXT_LAYERS) -> dict[str, Any]:
    """A text encoder config with the real hidden size and few, narrow layers: its outputs have
    the real shapes, its weights a small fraction of the real ones (any nesting: VL models).
    ``min_layers``: at least this many layers stay (for pipelines that read deeper ones)."""
    shrunk = copy.deepcopy(dict(config))
    keep = max(TEXT_LAYERS, min_layers)
    spares: dict[int, int] = {}

    def spare_id(token_id: int) -> int:
        return spares.setdefault(token_id, VOCAB_SIZE - 1 - len(spares))

    def walk(section: dict[str, Any]) -> None:
        layers = None
        for key in _LAYER_KEYS:
            if isinstance(section.get(key), int):
                section[key] = min(section[key], keep)
                layers = section[key]
        for key in _WIDTH_KEYS:
            if isinstance(section.get(key), int):
                section[key] = min(section[key], 64)
        # fewer heads where the head size is stated apart from the hidden size (T5's d_kv, an
        # explicit head_dim): the hidden size, all that the pipeline sees, stays the real one
        if isinstance(section.get("d_kv"), int) and isinstance(section.get("num_heads"), int):
            section["num_heads"] = min(section["num_heads"], 2)
        if isinstance(section.get("head_dim"), int) and isinstance(section.get("num_attention_heads"), int):
            section["num_attention_heads"] = min(section["num_attention_heads"], 2)
            if isinstance(section.get("num_key_value_heads"), int):
                section["num_key_value_heads"] = min(section["num_key_value_heads"], 2)
        if isinstance(section.get("vocab_size"), int):
            section["vocab_size"] = VOCAB_SIZE
        for key in list(section):  # ids past the small vocabulary: distinct ids the byte tokenizer never makes
            if key.endswith("_token_id") and isinstance(section[key], int) and section[key] >= VOCAB_SIZE:
                section[key] = spare_id(section[key])
            elif key.endswith("_token_id") and isinstance(section[key], list):
                section[key] = [spare_id(i) if isinstance(i, int) and i >= VOCAB_SIZE else i for i in section[key]]
        if layers is not None and isinstance(section.get("layer_types"), list):
            section["layer_types"] = section["layer_types"][:layers]
        for key in ("max_window_layers",):
            if isinstance(section.get(key), int):
                section[key] = min(section[key], keep)
        if isinstance(section.get("fullatt_block_indexes"), list):
            section["fullatt_block_indexes"] = [i for i in section["fullatt_block_indexes"] if i < keep]
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
                    config = shrink_text_config(config, layers_read(spec.pipeline_class))
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


def spec_from_document(document: Mapping[str, Any]) -> PipelineSpec:
    """The :class:`PipelineSpec` of a shipped offline config (``models/configs/NAME.json``):
    ``{"pipeline": CLASS, "components": {name: [library, class, config] or null}}``."""
    components = {}
    for name, entry in document["components"].items():
        if entry is None or entry[0] is None:
            components[name] = Component("", "", None)
        else:
            library, class_name, config = entry
            components[name] = Component(library, class_name, config)
    return PipelineSpec(str(document["pipeline"]), components)


MAX_TOKENIZER_LENGTH = 4096
"""Cap on a tokenizer's ``model_max_length`` (some configs say 1e30 for 'no limit')."""


def spec_from_files(locate: Callable[[str], str | os.PathLike | None], source: str) -> PipelineSpec:
    """The :class:`PipelineSpec` of a diffusers pipeline's files, configs only (no weights).

    Args:
        locate: maps a path inside the pipeline (``model_index.json``, ``vae/config.json``…)
            to a local file, or ``None`` where there is none (a folder, the Hugging Face cache,
            or a download of that one small file).
        source: the pipeline's name, for messages.

    Raises:
        NotAPipelineError: no ``model_index.json``, or a component without its config file.
    """
    index = _json_at(locate, "model_index.json", source)
    components: dict[str, Component] = {}
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or len(entry) != 2:
            continue
        library, class_name = entry
        if library is None or class_name is None:
            components[name] = Component("", "", None)
            continue
        if "tokenizer" in name or class_name.endswith(("Tokenizer", "TokenizerFast")):
            found = locate(f"{name}/tokenizer_config.json")
            config = json.loads(Path(found).read_text()) if found is not None else {}
            length = config.get("model_max_length", 512)
            length = int(min(length if isinstance(length, (int, float)) else 512, MAX_TOKENIZER_LENGTH))
            components[name] = Component(str(library), str(class_name), {"model_max_length": length})
            continue
        config = None
        for file in ("config.json", "scheduler_config.json", "preprocessor_config.json"):
            if locate(f"{name}/{file}") is not None:
                config = _json_at(locate, f"{name}/{file}", source)
                break
        if config is None:
            raise NotAPipelineError(f"model '{source}' has no config file for its component '{name}' ({class_name})")
        if file == "preprocessor_config.json":  # image processors of image-conditioned variants: not needed
            components[name] = Component("", "", None)
            continue
        components[name] = Component(str(library), str(class_name), config)
    return PipelineSpec(str(index.get("_class_name", "")), components)


def _json_at(locate: Callable[[str], str | os.PathLike | None], name: str, source: str) -> dict[str, Any]:
    found = locate(name)
    if found is None:
        raise NotAPipelineError(f"model '{source}' has no {name}")
    try:
        return json.loads(Path(found).read_text())
    except (OSError, ValueError) as error:
        raise NotAPipelineError(f"cannot read '{found}' of model '{source}': {error}") from None


def standin_pipeline(spec: PipelineSpec) -> Any:
    """The stand-in of ``spec``: denoiser and VAE on the meta device, small text encoders of the
    real hidden size, offline tokenizers; its ``__call__`` records the real call's shapes."""
    return build_pipeline(spec, meta=True, shrink_text=True)
