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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves, tree_map

from autosel.capture import Tap, TapKind
from autosel.errors import InvalidInputError, UnsupportedModelError
from autosel.models.calls import CallRecorder, RecordedCall
from autosel.models.families.base import Architecture, DiscoveredPoint
from autosel.models.families.dit import DIT_KINDS, denoiser_input
from autosel.noise import DDPMNoise, NoiseProcess, nearest_timestep
from autosel.schema import Sigma

FEED_FORWARD_NAMES = ("ff", "mlp", "feed_forward", "img_mlp", "ffn", "mlp_img")
"""Child names of a block's feed-forward, most common first; classes named like one count too."""

PROBE_LATENTS = ((16, 16), (16, 24))
"""The two latent sizes of the shape-only probe forwards (non-square on purpose)."""

SQUARE_PROBE_LATENTS = ((16, 16), (24, 24))
"""The probe sizes for denoisers that take square latents only (DiT's unpatchify; HiDream pads
other shapes to a fixed sequence): the catalogue then refuses non-square images."""

_RECORDERS: weakref.WeakKeyDictionary[Any, CallRecorder] = weakref.WeakKeyDictionary()


def recorder_for(pipeline: Any, component: str = "transformer") -> CallRecorder:
    """The call recorder of ``pipeline`` (one per pipeline object, so recordings are reused)."""
    if pipeline not in _RECORDERS:
        _RECORDERS[pipeline] = CallRecorder(pipeline, component)
    return _RECORDERS[pipeline]


@dataclass(frozen=True)
class GenericLayout:
    """What discovery measured of one denoiser: its points, patch and image-token position."""

    candidates: tuple[DiscoveredPoint, ...]
    patch: int
    image_first: bool
    square_only: bool = False


class Generic(Architecture):
    """Any diffusers 2-D image transformer that no other family matches (the fallback)."""

    name = "generic"
    component = "transformer"
    fallback = True
    records_calls = True
    description = "any other diffusers transformer: points found structurally, inputs from the pipeline's own call"

    @classmethod
    def matches(cls, config: Mapping[str, Any]) -> bool:
        return is_image_transformer_class(str(config.get("_class_name", "")))

    def bind_pipeline(self, pipeline: Callable[[], Any]) -> Generic:
        """This architecture recording its calls from ``pipeline()`` (loaded, twin or stand-in),
        with the VAE scale factor, latent channels and, where the denoiser's config has no
        ``sample_size``, the native size read off that pipeline."""
        built = pipeline()
        recorder = recorder_for(built)
        factor = recorder.vae_scale_factor
        native_size = self.native_size
        default_sample_size = getattr(built, "default_sample_size", None)
        if native_size is None and "sample_size" not in self.denoiser_config and isinstance(default_sample_size, int):
            native_size = default_sample_size * factor  # the pipeline's own default height and width
        side = 16 * factor
        return replace(
            self, calls=pipeline, vae_scale_factor=factor, latent_channels=recorder.latent_channels((side, side)),
            native_size=native_size,
        )

    @property
    def patch_size(self) -> int:
        return layout_of(self).patch

    def latent_size(self, image_size=None) -> tuple[int, int]:
        height, width = super().latent_size(image_size)
        if height != width and layout_of(self).square_only:
            raise InvalidInputError(
                f"{self.denoiser_config.get('_class_name')} takes square images only (its forward fails on a "
                f"{height}x{width} latent): use a square --image-size, e.g. {max(height, width) * self.vae_scale_factor}"
            )
        return height, width

    def build_denoiser(self, device: str | torch.device = "meta") -> nn.Module:
        import diffusers

        class_name = str(self.denoiser_config.get("_class_name"))
        config = {k: v for k, v in self.denoiser_config.items() if not k.startswith("_")}
        with torch.device(device):
            module = getattr(diffusers, class_name).from_config(config)
        if torch.device(device).type == "meta":
            RealOnMeta.attach(module)
        return module.eval()

    def discover(self, denoiser: nn.Module) -> list[DiscoveredPoint]:
        return [self._denoiser_input(), *layout_of(self).candidates]

    def _denoiser_input(self) -> DiscoveredPoint:
        """``dit-in``, unpacked as the recorded call packs the latent (p×p tokens or channels)."""
        size = self.native_resolution
        layout = architecture_recorder(self).call("", (size, size), PROBE_TIMESTEP).layout
        patch = layout.patch if layout.kind in ("tokens", "unshuffle") else 1
        return denoiser_input(patch=patch, image_first=layout.fixed is not None and not layout.fixed_first)

    def token_grid(self, latent_hw):
        patch = self.patch_size
        return latent_hw[0] // patch, latent_hw[1] // patch

    def dummy_conditioning(self, batch, device="meta", dtype=torch.float32, image_hw=None):
        image_hw = image_hw or (self.native_resolution,) * 2
        recorded = architecture_recorder(self).call("", tuple(image_hw), PROBE_TIMESTEP)
        return {"call": recorded.on_meta()}

    def encode_prompt(self, pipeline, prompt, device, dtype, image_hw):
        return {"prompt": prompt, "image_hw": tuple(image_hw)}

    def inputs(self, sample, timestep, conditioning):
        recorded: RecordedCall = conditioning["call"]
        return recorded.replay(sample, timestep)

    def live_inputs(
        self, pipeline: Any, sample: torch.Tensor, timestep: int, conditioning: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Arguments of one forward at config ``timestep``, from the pipeline's recorded call."""
        recorder = recorder_for(pipeline)
        if isinstance(timestep, Sigma):
            timestep = (nearest_recorded_timestep(recorder, timestep, conditioning["image_hw"], conditioning["prompt"])
                        if recorder.flow else DDPMNoise(pipeline.scheduler.config).timestep_of(timestep))
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
        return DDPMNoise(pipeline.scheduler.config)


def is_image_transformer_class(class_name: str) -> bool:
    """Whether diffusers has a model class ``class_name`` that the generic path may take: one
    of its transformers (``diffusers.models.transformers``, whatever the class is called, e.g.
    ``LuminaNextDiT2DModel``); UNets need a known block vocabulary, so they go through the UNet
    families."""
    import diffusers

    try:
        model = getattr(diffusers, class_name, None)
    except Exception:  # noqa: BLE001 - a lazy import that fails is not a class we can use
        return False
    return (
        isinstance(model, type)
        and issubclass(model, diffusers.ModelMixin)
        and model.__module__.startswith("diffusers.models.transformers.")
    )


def nearest_recorded_timestep(recorder: CallRecorder, sigma: float, image_hw: tuple[int, int], prompt: str = "") -> int:
    """The training timestep whose σ in the pipeline's own recorded call at ``image_hw`` is nearest
    ``sigma`` (ties: the lower t), by bisection (σ grows with t): a ``sigma:`` on the generic path
    runs at the pipeline's own schedule point nearest it, as a DDPM model's does."""
    return nearest_timestep(lambda t: float(recorder.call(prompt, tuple(image_hw), t).sigma or 0.0), sigma,
                            recorder.num_train_timesteps)


class RecordedFlowNoise(NoiseProcess):
    """x_t = (1 − σ)·x_0 + σ·ε with σ as the pipeline's own scheduler sets it for t/1000 (its
    shift, static or resolution-dependent); the timestep input is the recorded one. A
    :class:`~autosel.schema.Sigma` runs at the timestep whose recorded σ is nearest it
    (:func:`nearest_recorded_timestep`)."""

    def __init__(self, recorder: CallRecorder) -> None:
        self.recorder = recorder

    def level(self, level, tokens, image_hw=None, prompt=""):
        if isinstance(level, Sigma):
            level = nearest_recorded_timestep(self.recorder, level, image_hw, prompt)
        return float(level), float(self.recorder.call(prompt, tuple(image_hw), level).sigma or 0.0)

    def __call__(self, latents, noise, timestep, tokens, image_hw=None, prompt=""):
        if isinstance(timestep, Sigma):
            timestep = nearest_recorded_timestep(self.recorder, timestep, image_hw, prompt)
        recorded = self.recorder.call(prompt, tuple(image_hw), timestep)
        sigma = float(recorded.sigma or 0.0)
        noisy = (1.0 - sigma) * latents + sigma * noise
        return noisy, recorded.timestep_input(len(latents), latents.device)


PROBE_TIMESTEP = 500
"""The timestep of the recordings that only shapes are read from (catalogue, probes)."""


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
    # query projections alone, or fused with keys and values (``to_qkv``; FLUX.2's single-stream
    # blocks fuse the feed-forward's input too, ``to_qkv_mlp_proj``; PRX's ``img_qkv_proj``)
    return any(name == "to_q" or "qkv" in name for name, _ in module.named_children())


class RealOnMeta(TorchFunctionMode):
    """Lets a shape-only forward on the meta device read real integer inputs.

    The recorded masks and ids stay real (:meth:`RecordedCall.on_meta`) so that a denoiser can
    use them as data (lengths from a mask, ``.tolist()``); where an operation mixes them with
    meta tensors, they are moved to the meta device for it. A meta tensor selected by a real
    boolean mask (``x[mask]``, ``masked_select``) gets the shape the mask's count gives (the
    meta device has no ``nonzero``). A count of a meta tensor's values (``bincount``: how many
    tokens a mixture-of-experts router sends to each expert) is answered, as a real tensor, as
    if every value were 0: one expert takes every token, which gives each of its modules the
    shapes of a real forward. Numbers a denoiser makes a tensor of on the meta device
    (``torch.tensor([h, w], device=...)``) stay real, and a real one-number integer tensor
    meeting a meta one (``x[:h * w]``, ``x.reshape(1, h, w, -1)``) is read as its number.
    ``torch.autocast`` on the meta device (a denoiser turning
    autocast off around its RoPE on its tensors' device) runs as the CPU's: the meta device has
    no autocast, and a shape-only forward has no precision to keep.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        answer = _data_dependent_on_meta(func, args, kwargs)
        if answer is not None:
            return answer
        tensors = [leaf for leaf in tree_leaves((args, kwargs)) if isinstance(leaf, torch.Tensor)]
        if any(t.is_meta for t in tensors) and not all(t.is_meta for t in tensors):
            def plain(leaf: Any) -> Any:
                return _meta_copy(_plain_index(leaf))

            # the first argument (a method's tensor itself) stays a tensor; numbers elsewhere are read
            args = (*tree_map(_meta_copy, args[:1]), *tree_map(plain, args[1:]))
            kwargs = tree_map(plain, kwargs)
        return func(*args, **kwargs)

    def __enter__(self):
        self._autocasts = (torch.autocast, torch.amp.autocast)
        torch.autocast = torch.amp.autocast = _AutocastOffMeta
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        torch.autocast, torch.amp.autocast = self._autocasts
        return super().__exit__(*exc)

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


class _AutocastOffMeta(torch.amp.autocast_mode.autocast):
    """``torch.autocast`` that takes ``device_type="meta"`` as the CPU's."""

    def __init__(self, device_type: str, *args: Any, **kwargs: Any) -> None:
        super().__init__("cpu" if device_type == "meta" else device_type, *args, **kwargs)


def _data_dependent_on_meta(func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> torch.Tensor | None:
    """What the meta device cannot compute from shapes, where a shape-only answer exists:
    ``x[mask]`` or ``x.masked_select(mask)`` of a meta ``x`` and a real boolean ``mask`` (the
    rows the mask selects, on the meta device), ``bincount`` of a meta tensor (every value
    counted as 0, a real tensor), ``torch.tensor`` of Python numbers asked for on the meta device
    (kept real: its values are known, and a denoiser may read them back, as image sizes it
    made from its input's shape); ``None`` for any other call."""
    if func is torch.Tensor.__getitem__ and len(args) == 2 and isinstance(args[0], torch.Tensor) and args[0].is_meta:
        index = args[1]
        items = index if isinstance(index, tuple) else (index,)
        plain = tuple(_plain_index(item) for item in items)
        if any(new is not old for new, old in zip(plain, items)):
            return func(args[0], plain if isinstance(index, tuple) else plain[0])
    if func in (torch.tensor, torch.as_tensor):
        data = args[0] if args else kwargs.get("data")
        device = kwargs.get("device")
        if device is not None and torch.device(device).type == "meta" and not _holds_tensor(data):
            return func(*args, **{**kwargs, "device": "cpu"})
    if func in (torch.bincount, torch.Tensor.bincount):
        values = args[0] if args else kwargs.get("input")
        if isinstance(values, torch.Tensor) and values.is_meta:
            weights = args[1] if len(args) > 1 else kwargs.get("weights")
            minlength = int(args[2] if len(args) > 2 else kwargs.get("minlength", 0))
            counts = torch.zeros(max(minlength, 1), dtype=torch.float64 if weights is not None else torch.long)
            counts[0] = values.numel()
            return counts
    if func is torch.Tensor.__getitem__ and len(args) == 2:
        tensor, index = args
        if isinstance(index, tuple) and len(index) == 1:
            index = index[0]
        if (
            isinstance(tensor, torch.Tensor) and tensor.is_meta and isinstance(index, torch.Tensor)
            and not index.is_meta and index.dtype == torch.bool and index.ndim <= tensor.ndim
            and tuple(index.shape) == tuple(tensor.shape[: index.ndim])
        ):
            return torch.empty((int(index.sum()), *tensor.shape[index.ndim :]), device="meta", dtype=tensor.dtype)
    if func in (torch.masked_select, torch.Tensor.masked_select):
        tensor = args[0] if args else kwargs.get("input")
        mask = args[1] if len(args) > 1 else kwargs.get("mask")
        if (
            isinstance(tensor, torch.Tensor) and tensor.is_meta and isinstance(mask, torch.Tensor)
            and not mask.is_meta and mask.dtype == torch.bool
        ):
            count = int(mask.expand(torch.broadcast_shapes(tensor.shape, mask.shape)).sum())
            return torch.empty((count,), device="meta", dtype=tensor.dtype)
    return None


def _plain_index(item: Any) -> Any:
    """A real 0-dim integer tensor (alone or as a slice bound: ``x[:n]``, ``reshape(n, -1)``)
    as a Python int: moved to the meta device it would have no value to size or slice by."""
    if isinstance(item, torch.Tensor) and not item.is_meta and item.numel() == 1 and not item.is_floating_point() \
            and item.dtype != torch.bool and item.ndim == 0:
        return int(item)
    if isinstance(item, slice):
        parts = (_plain_index(item.start), _plain_index(item.stop), _plain_index(item.step))
        if any(new is not old for new, old in zip(parts, (item.start, item.stop, item.step))):
            return slice(*parts)
    return item


def _holds_tensor(data: Any) -> bool:
    return any(isinstance(leaf, torch.Tensor) for leaf in tree_leaves(data))


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
    recorded = recorder.call("", image_hw, PROBE_TIMESTEP).on_meta()
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
    try:
        return _measure_layout(architecture, denoiser, lists, PROBE_LATENTS)
    except UnsupportedModelError as non_square:
        try:
            return replace(_measure_layout(architecture, denoiser, lists, SQUARE_PROBE_LATENTS), square_only=True)
        except UnsupportedModelError:
            raise non_square from None


def _measure_layout(architecture: Architecture, denoiser: nn.Module, lists, sizes) -> GenericLayout:
    class_name = type(denoiser).__name__
    (ha, wa), (hb, wb) = sizes
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
    candidates: list[DiscoveredPoint] = []
    for number, block in enumerate(image_blocks):
        parts = _block_parts(block, modules, seen_a, token_growth, map_growth, image_tokens)
        for kind in DIT_KINDS:
            if kind in parts:
                tap = parts[kind]
                candidates.append(DiscoveredPoint(
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
