"""The generic path: any diffusers 2-D image transformer, with no adapter written for it.

What a hand-written family states, this one measures:

- **activation points**, found structurally: every ``nn.ModuleList`` of the denoiser whose
  items are blocks of one class holding an attention module; blocks numbered in forward order
  across lists (``vit-block{i}-{kind}``); inside each block the attention's input (``norm-in``,
  the AdaLN-modulated normalised tokens), its ``to_q``/``to_k``/``to_v`` outputs (``self-q``…),
  a second attention called with text (``cross-q``), the feed-forward's input (``norm-out``) and
  the input of its last projection (``ffn-inner``, the hidden activation), and the block's
  output (``out``);
- **image tokens**, told apart from text tokens by two shape-only forwards on the meta device at
  two latent sizes: a token axis that grows with the image holds image tokens (blocks whose
  tokens do not grow, such as text refiners, are left out); how much it grows gives the patch
  size; where the image tokens sit in a joint sequence (first or last) is read from the
  concatenations the forward makes;
- **conditioning, latent packing, σ and the timestep's scale** come from the pipeline's own
  ``__call__`` (:mod:`autosel.models.calls`).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves, tree_map

from autosel.capture import Tap, TapKind
from autosel.errors import UnsupportedModelError
from autosel.models.calls import CallRecorder, RecordedCall
from autosel.models.families.base import Candidate, Family
from autosel.models.families.dit import DIT_KINDS
from autosel.noise import NoiseProcess

if TYPE_CHECKING:
    from autosel.models.architecture import Architecture

FEED_FORWARD_NAMES = ("ff", "mlp", "feed_forward", "img_mlp", "ffn", "mlp_img")
"""Child names of a block's feed-forward, most common first; classes named like one count too."""

PROBE_LATENTS = ((16, 16), (16, 24))
"""The two latent sizes of the shape-only probe forwards (non-square on purpose)."""

_RECORDERS: weakref.WeakKeyDictionary[Any, CallRecorder] = weakref.WeakKeyDictionary()


def recorder_for(pipeline: Any, component: str = "transformer") -> CallRecorder:
    """The call recorder of ``pipeline`` (one per pipeline object, so recordings are reused)."""
    if pipeline not in _RECORDERS:
        _RECORDERS[pipeline] = CallRecorder(pipeline, component)
    return _RECORDERS[pipeline]


@dataclass(frozen=True)
class GenericLayout:
    """What discovery measured of one denoiser: its points, patch and image-token position."""

    candidates: tuple[Candidate, ...]
    patch: int
    image_first: bool


class Generic(Family):
    name = "generic"
    component = "transformer"
    denoiser_class = ""
    description = "any diffusers 2-D image transformer: points found structurally, inputs from the pipeline's own call"

    def build(self, architecture: Architecture, device: str | torch.device = "meta") -> nn.Module:
        import diffusers

        class_name = str(architecture.denoiser_config.get("_class_name"))
        config = {k: v for k, v in architecture.denoiser_config.items() if not k.startswith("_")}
        with torch.device(device):
            module = getattr(diffusers, class_name).from_config(config)
        if torch.device(device).type == "meta":
            RealOnMeta.attach(module)
        return module.eval()

    def discover(self, denoiser: nn.Module, architecture: Architecture | None = None) -> list[Candidate]:
        if architecture is None:
            raise UnsupportedModelError("the generic path discovers points through the pipeline's call: pass the architecture")
        return list(layout_of(architecture).candidates)

    def token_grid(self, architecture, latent_hw):
        patch = layout_of(architecture).patch
        return latent_hw[0] // patch, latent_hw[1] // patch

    def dummy_conditioning(self, architecture, batch, device="meta", dtype=torch.float32, image_hw=None):
        image_hw = image_hw or (architecture.native_resolution,) * 2
        recorded = architecture_recorder(architecture).call("", tuple(image_hw), _mid(architecture))
        return {"call": recorded.on_meta()}

    def encode_prompt(self, pipeline, architecture, prompt, device, dtype, image_hw):
        return {"prompt": prompt, "image_hw": tuple(image_hw)}

    def inputs(self, architecture, sample, timestep, conditioning):
        recorded: RecordedCall = conditioning["call"]
        return recorded.replay(sample, timestep)

    def live_inputs(
        self, pipeline: Any, sample: torch.Tensor, timestep: int, conditioning: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Arguments of one forward at config ``timestep``, from the pipeline's recorded call."""
        recorder = recorder_for(pipeline)
        recorded = recorder.call(conditioning["prompt"], conditioning["image_hw"], timestep)
        model_timestep = recorded.timestep_input(len(sample), sample.device)
        if not recorder.flow:  # DDPM: the timestep input is t itself, in the recorded dtype
            model_timestep = torch.full_like(model_timestep, timestep)
        return recorded.replay(sample, model_timestep)

    def attach(self, pipeline: Any, text_encoders_on_device: Any) -> None:
        recorder_for(pipeline).context = text_encoders_on_device

    def make_noise(self, pipeline: Any) -> NoiseProcess:
        recorder = recorder_for(pipeline)
        if recorder.flow:
            return RecordedFlowNoise(recorder)
        from autosel.noise import DDPMNoise

        return DDPMNoise(pipeline.scheduler.config)


class RecordedFlowNoise(NoiseProcess):
    """x_t = (1 − σ)·x_0 + σ·ε with σ as the pipeline's own scheduler sets it for t/1000 (its
    shift, static or resolution-dependent); the timestep input is the recorded one."""

    def __init__(self, recorder: CallRecorder) -> None:
        self.recorder = recorder

    def __call__(self, latents, noise, timestep, tokens, image_hw=None, prompt=""):
        recorded = self.recorder.call(prompt, tuple(image_hw), timestep)
        sigma = float(recorded.sigma or 0.0)
        noisy = (1.0 - sigma) * latents + sigma * noise
        return noisy, recorded.timestep_input(len(latents), latents.device)


def _mid(architecture: Architecture) -> int:
    return 500


def architecture_recorder(architecture: Architecture) -> CallRecorder:
    """The recorder of the pipeline behind ``architecture`` (built on first use)."""
    if architecture.calls is None:
        raise UnsupportedModelError(
            f"{architecture.denoiser_config.get('_class_name')} ({architecture.source}) needs its pipeline's "
            "configs to be catalogued: pass a local pipeline folder or a model in the Hugging Face cache"
        )
    return recorder_for(architecture.calls(), "transformer")


_LAYOUTS: dict[str, GenericLayout] = {}


def layout_of(architecture: Architecture) -> GenericLayout:
    """The measured layout of ``architecture``'s denoiser (cached per config in this process)."""
    import json

    key = json.dumps([dict(architecture.denoiser_config), architecture.source], sort_keys=True, default=str)
    if key not in _LAYOUTS:
        _LAYOUTS[key] = _discover(architecture)
    return _LAYOUTS[key]


# -- discovery -------------------------------------------------------------------------------


def block_lists(denoiser: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """``(path, blocks)`` of every module list whose items are same-class blocks with attention."""
    found = []
    for path, module in denoiser.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        items = list(module)
        if len({type(item) for item in items}) != 1:
            continue
        if all(any(_is_attention(sub) for sub in item.modules()) for item in items):
            if not any(path.startswith(f"{outer}.") for outer, _ in found):
                found.append((path, items))
    return found


def _is_attention(module: nn.Module) -> bool:
    # query projections alone, or fused with keys and values (and, in parallel blocks such as
    # FLUX.2's single-stream ones, with the feed-forward's input: ``to_qkv_mlp_proj``)
    return any(name == "to_q" or name.startswith("to_qkv") for name, _ in module.named_children())


class RealOnMeta(TorchFunctionMode):
    """Lets a shape-only forward on the meta device read real integer inputs.

    The recorded masks and ids stay real (:meth:`RecordedCall.on_meta`) so that a denoiser can
    use them as data (lengths from a mask, ``.tolist()``); where an operation mixes them with
    meta tensors, they are moved to the meta device for it.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [leaf for leaf in tree_leaves((args, kwargs)) if isinstance(leaf, torch.Tensor)]
        if any(t.is_meta for t in tensors) and not all(t.is_meta for t in tensors):
            args, kwargs = tree_map(lambda leaf: _meta_copy(leaf), (args, kwargs))
        return func(*args, **kwargs)

    @classmethod
    def attach(cls, module: nn.Module) -> None:
        """Run every forward of ``module`` (built on the meta device) under this mode."""
        modes: list[RealOnMeta] = []

        def enter(mod: nn.Module, args: Any) -> None:
            modes.append(cls())
            modes[-1].__enter__()

        def leave(mod: nn.Module, args: Any, output: Any) -> None:
            if modes:
                modes.pop().__exit__(None, None, None)

        module.register_forward_pre_hook(enter)
        module.register_forward_hook(leave, always_call=True)


def _meta_copy(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and not value.is_meta:
        return value.to("meta")
    return value


@dataclass
class _Seen:
    """What one probe forward saw at one module."""

    order: int
    inputs: list[tuple[int, ...]]
    outputs: list[tuple[int, ...]]
    has_context: bool


class _CatWatcher(TorchFunctionMode):
    """Records the sizes of every concatenation along a token axis (for where image tokens sit)."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[list[int]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.cat, torch.concat, torch.concatenate) and args:
            tensors = args[0]
            dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
            if isinstance(tensors, (list, tuple)) and len(tensors) > 1 and all(isinstance(t, torch.Tensor) for t in tensors):
                ndim = tensors[0].ndim
                if ndim >= 2 and dim in (0, 1, -2, ndim - 2):
                    self.sizes.append([int(t.shape[dim]) for t in tensors])
        return func(*args, **kwargs)


def _probe(architecture: Architecture, denoiser: nn.Module, latent_hw: tuple[int, int]) -> tuple[dict[str, _Seen], list[list[int]], int]:
    recorder = architecture_recorder(architecture)
    factor = recorder.vae_scale_factor
    image_hw = (latent_hw[0] * factor, latent_hw[1] * factor)
    recorded = recorder.call("", image_hw, _mid(architecture)).on_meta()
    channels = recorder.latent_channels(image_hw)
    seen: dict[str, _Seen] = {}
    handles = []

    def shapes(value: Any) -> list[tuple[int, ...]]:
        if isinstance(value, torch.Tensor):
            return [tuple(value.shape)]
        if isinstance(value, (list, tuple)):
            return [tuple(v.shape) if isinstance(v, torch.Tensor) else () for v in value]
        sample = getattr(value, "sample", None)
        return [tuple(sample.shape)] if isinstance(sample, torch.Tensor) else []

    for path, module in denoiser.named_modules():
        def pre(mod, args, kwargs, path=path):
            first = args[0] if args else kwargs.get("hidden_states", kwargs.get("x"))
            context = args[1] if len(args) > 1 and isinstance(args[1], torch.Tensor) else kwargs.get("encoder_hidden_states")
            seen.setdefault(path, _Seen(len(seen), shapes(first), [], isinstance(context, torch.Tensor)))

        def post(mod, args, output, path=path):
            if path in seen and not seen[path].outputs:
                seen[path].outputs = shapes(output)

        handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(module.register_forward_hook(post))
    watcher = _CatWatcher()
    try:
        with torch.device("meta"):
            sample = torch.zeros(1, channels, *latent_hw)
            timestep = recorded.timestep_input(1, "meta")
        args, kwargs = recorded.replay(sample, timestep)
        with torch.no_grad(), watcher:
            denoiser(*args, **kwargs)
    except Exception as error:
        raise UnsupportedModelError(
            f"a shape-only forward of {type(denoiser).__name__} failed on the meta device: {str(error).splitlines()[0]}"
        ) from None
    finally:
        for handle in handles:
            handle.remove()
    return seen, watcher.sizes, channels


def _discover(architecture: Architecture) -> GenericLayout:
    denoiser = architecture.build_denoiser("meta")
    class_name = type(denoiser).__name__
    lists = block_lists(denoiser)
    if not lists:
        raise UnsupportedModelError(f"no repeated transformer blocks found in {class_name}")
    (ha, wa), (hb, wb) = PROBE_LATENTS
    seen_a, cats, _ = _probe(architecture, denoiser, (ha, wa))
    seen_b, _, _ = _probe(architecture, denoiser, (hb, wb))
    growth_pixels = hb * wb - ha * wa

    def token_growth(path: str, where: str, index: int = 0) -> int:
        a, b = seen_a.get(path), seen_b.get(path)
        if a is None or b is None:
            return 0
        shapes_a, shapes_b = (a.inputs, b.inputs) if where == "in" else (a.outputs, b.outputs)
        if index >= len(shapes_a) or index >= len(shapes_b) or len(shapes_a[index]) != 3:
            return 0
        return shapes_b[index][1] - shapes_a[index][1]

    def map_growth(path: str, where: str) -> int:
        """Growth of a B×C×H×W input or output (blocks that run a convolution on the token grid)."""
        a, b = seen_a.get(path), seen_b.get(path)
        if a is None or b is None:
            return 0
        shapes_a, shapes_b = (a.inputs, b.inputs) if where == "in" else (a.outputs, b.outputs)
        if not shapes_a or not shapes_b or len(shapes_a[0]) != 4 or len(shapes_b[0]) != 4:
            return 0
        return shapes_b[0][2] * shapes_b[0][3] - shapes_a[0][2] * shapes_a[0][3]

    blocks = [(path, f"{path}.{i}") for path, items in lists for i in range(len(items))]
    blocks = [(owner, block) for owner, block in blocks if block in seen_a]
    image_blocks = [block for _, block in blocks if token_growth(block, "in") > 0]
    if not image_blocks:
        raise UnsupportedModelError(f"no transformer blocks of {class_name} run on image tokens (every block list's tokens stay fixed as the image grows)")
    growth = token_growth(image_blocks[0], "in")
    patch_area = growth_pixels // growth
    patch = int(round(patch_area ** 0.5))
    if patch * patch * growth != growth_pixels:
        raise UnsupportedModelError(f"cannot tell {class_name}'s patch size: its image tokens grow by {growth} for {growth_pixels} latent pixels")
    image_tokens = (ha // patch) * (wa // patch)
    image_first = _image_first(cats, image_tokens)
    image_blocks.sort(key=lambda block: seen_a[block].order)
    modules = dict(denoiser.named_modules())
    candidates: list[Candidate] = []
    for number, block in enumerate(image_blocks):
        parts = _block_parts(block, modules, seen_a, token_growth, map_growth, image_tokens)
        for kind in DIT_KINDS:
            if kind in parts:
                tap = parts[kind]
                candidates.append(Candidate(
                    f"vit-block{number}-{kind}", "vit-block-out" if kind == "out" else kind, "vit", None, None, number,
                    Tap(tap.module, tap.kind, index=tap.index, image_first=image_first), extra=kind == "norm-in",
                ))
    return GenericLayout(tuple(candidates), patch, image_first)


def _image_first(cats: list[list[int]], image_tokens: int) -> bool:
    """Whether image tokens come before text tokens in joint sequences, by the forward's own
    concatenations (first one naming an image-sized part with others beside it); else last."""
    for sizes in cats:
        if image_tokens in sizes and sum(sizes) > image_tokens:
            return sizes.index(image_tokens) == 0
    return False


def _block_parts(block, modules, seen_a, token_growth, map_growth, image_tokens) -> dict[str, Tap]:
    inside = sorted(
        (path for path in seen_a if path.startswith(f"{block}.")), key=lambda path: seen_a[path].order
    )
    direct = [path for path in inside if "." not in path[len(block) + 1 :]]
    parts: dict[str, Tap] = {}

    def rank(path: str, where: str, index: int = 0) -> int:
        shapes = seen_a[path].inputs if where == "in" else seen_a[path].outputs
        return len(shapes[index]) if index < len(shapes) else 0

    attentions = [path for path in direct if _is_attention(modules[path]) and token_growth(path, "in") > 0]
    if attentions:
        first = attentions[0]
        parts["norm-in"] = Tap(first, TapKind.INPUT_TOKENS)
        for kind, projection in (("self-q", "to_q"), ("self-k", "to_k"), ("self-v", "to_v")):
            path = f"{first}.{projection}"
            if path in seen_a and token_growth(path, "out") > 0:
                parts[kind] = Tap(path, TapKind.TOKENS)
        for other in attentions[1:]:
            if seen_a[other].has_context and f"{other}.to_q" in seen_a:
                parts["cross-q"] = Tap(f"{other}.to_q", TapKind.TOKENS)
                break
    feed_forward = next(
        (path for path in direct if _is_feed_forward(path, modules[path])
         and (token_growth(path, "in") > 0 or map_growth(path, "in") > 0)), None
    )
    if feed_forward is not None:
        # a convolutional feed-forward (Sana's GLUMBConv) takes the tokens folded to a B×C×H×W map
        on_map = map_growth(feed_forward, "in") > 0
        parts["norm-out"] = Tap(feed_forward, TapKind.INPUT if on_map else TapKind.INPUT_TOKENS)
        projections = [
            path for path in inside
            if path.startswith(f"{feed_forward}.") and isinstance(modules[path], (nn.Linear, nn.Conv2d))
        ]
        if projections:
            last = max(projections, key=lambda path: seen_a[path].order)
            grows = token_growth(last, "in") > 0
            if grows:
                parts["ffn-inner"] = Tap(last, TapKind.INPUT_TOKENS)
            elif rank(last, "in") == 4:
                parts["ffn-inner"] = Tap(last, TapKind.INPUT)
    else:
        activation = next(
            (path for path in direct if isinstance(modules[path], (nn.GELU, nn.SiLU)) or "act" in path.rsplit(".", 1)[-1]),
            None,
        )
        if activation is not None and token_growth(activation, "out") > 0:
            parts["ffn-inner"] = Tap(activation, TapKind.TOKENS)
    outputs = seen_a[block].outputs
    growing = [index for index in range(len(outputs)) if token_growth(block, "out", index) > 0]
    if growing:
        exact = [index for index in growing if seen_a[block].outputs[index][1] == image_tokens]
        parts["out"] = Tap(block, TapKind.TOKENS, index=(exact or growing)[-1])
    return parts


def _is_feed_forward(path: str, module: nn.Module) -> bool:
    name = path.rsplit(".", 1)[-1]
    class_name = type(module).__name__.lower()
    return name in FEED_FORWARD_NAMES or any(word in class_name for word in ("feedforward", "mlp", "glumbconv", "ffn"))
