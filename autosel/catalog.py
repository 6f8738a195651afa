"""The activation catalogue: every point of a denoiser that autosel can take features from.

Points are discovered by each model's family (:mod:`autosel.models.families`) walking the
module tree by module type (``ResnetBlock2D``, ``Transformer2DModel``, ``BasicTransformerBlock``,
``Attention``, ``Downsample2D``, transformer blocks…), never from per-model tables, and named
with the seed codebase's ids (generic-diffusion-feature)::

    {down,up}-level{L}-repeat{R}-{res-out,res-increment,vit-out}
    {down,up}-level{L}-repeat{R}-vit-block{i}-{self-q,self-k,self-v,self-map,cross-q,cross-map,ffn-inner,out}
    {down,up}-level{L}-{downsampler,upsampler}-out
    mid-repeat{R}-{res-out,res-increment}, mid-vit-out, mid-vit-block{i}-…
    unet-in, unet-after-conv-in, unet-out
    dit-in, vit-block{i}-{norm-in,self-q,self-k,self-v,cross-q,norm-out,ffn-inner,out}   (diffusion transformers)

Shapes and depths are measured, not computed by hand: the denoiser is built on the meta device
and run once through the same hooks that extraction uses (``autosel.capture``), so what the
catalogue announces is what extraction returns.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from autosel.capture import ActivationCapture, Tap, TapKind
from autosel.errors import unknown_activation
from autosel.limits import check_image_memory
from autosel.models.architecture import load_architecture
from autosel.models.families import Architecture, DiscoveredPoint, ImageSize
from autosel.models.families.unet import discover_unet
from autosel.models.registry import ModelSpec, resolve_model

discover_taps = discover_unet
"""Every activation point of a diffusers UNet (the UNet families' discovery)."""

@dataclass(frozen=True)
class ActivationPoint:
    """One place in the denoiser whose value can serve as a feature map.

    Attributes:
        id: the stable activation id (the contract between search, YAML and extractor).
        kind: ``res-out``, ``res-increment``, ``vit-out``, ``vit-block-out``, ``self-q``,
            ``self-k``, ``self-v``, ``self-map``, ``cross-q``, ``cross-map``, ``ffn-inner``,
            ``downsampler-out``, ``upsampler-out``, ``unet-in``, ``unet-after-conv-in``,
            ``unet-out``, or ``dit-in`` (a transformer's input on the latent grid).
        stage: ``down``, ``mid``, ``up``, ``unet`` for a UNet's input and output, ``vit`` for
            transformer blocks, ``dit`` for a transformer's input.
        level: the down/up block index (``None`` for mid and unet points).
        repeat: the resnet/attention pair index inside the block, when there is one.
        block: the transformer block index inside an attention, when there is one.
        module: the dotted module path where the value is captured.
        channels, height, width: shape of the feature map for one image at the catalogue's
            image size (tokens are folded onto the real latent grid, also for non-square input).
        depth: fraction of the denoiser's forward (in FLOPs) that must run before the value
            exists; an extraction can stop there.
        extra: ``True`` for points beyond the seed codebase's id set.
    """

    id: str
    kind: str
    stage: str
    level: int | None
    repeat: int | None
    block: int | None
    module: str
    channels: int
    height: int
    width: int
    depth: float
    extra: bool = False
    tap: Tap = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view (JSON/YAML friendly), without the capture internals."""
        data = asdict(self)
        data.pop("tap")
        return data


def measure_catalogue(
    architecture: Architecture, image_size: ImageSize | None = None, cache: bool = True
) -> list[ActivationPoint]:
    """The catalogue of an architecture at ``image_size`` (default: its native resolution).

    The UNet is built on the meta device and run once through the capture hooks (shapes)
    while a FLOP tally runs beside them (depths); no weights are needed. With ``cache``, a
    catalogue measured before in this process is reused.

    Raises:
        InvalidInputError: ``image_size`` could not fit in this machine's memory (checked first).
    """
    if image_size is not None:
        check_image_memory(image_size)  # a size no device here can hold is refused, not measured
    latent_hw = architecture.latent_size(image_size)
    key = json.dumps(
        [architecture.family, dict(architecture.denoiser_config), architecture.text_len, architecture.latent_channels, latent_hw],
        sort_keys=True,
        default=str,
    )
    if not cache or key not in _MEASURED:
        _MEASURED[key] = _measure(architecture, latent_hw)
    return list(_MEASURED[key])


_MEASURED: dict[str, tuple[ActivationPoint, ...]] = {}
"""Catalogues already measured in this process, keyed by architecture and latent size."""


def _measure(architecture: Architecture, latent_hw: tuple[int, int]) -> tuple[ActivationPoint, ...]:
    denoiser = architecture.build_denoiser(device="meta")
    candidates = architecture.discover(denoiser)
    with torch.device("meta"):
        sample = torch.zeros(1, architecture.latent_channels, *latent_hw)
        timestep = torch.tensor([1.0]) if architecture.flow else torch.tensor([1])
    args, kwargs = architecture.dummy_inputs(sample, timestep)
    taps = {candidate.id: candidate.tap for candidate in candidates}
    flops = _FlopTally(denoiser)  # registered first: its hooks run before the recorders read it
    reached: dict[str, int] = {}
    try:
        flops.record_when_reached(candidates, reached)
        with torch.no_grad(), ActivationCapture(denoiser, taps) as capture:
            capture.token_grid = architecture.token_grid(latent_hw)
            shapes = {name: tuple(value.shape) for name, value in capture.run(*args, **kwargs).items()}
    finally:
        flops.remove()
    total = max(flops.total, 1)
    points = [
        ActivationPoint(
            id=c.id, kind=c.kind, stage=c.stage, level=c.level, repeat=c.repeat, block=c.block,
            module=c.tap.module, channels=int(shapes[c.id][1]), height=int(shapes[c.id][2]),
            width=int(shapes[c.id][3]), depth=reached[c.id] / total, extra=c.extra, tap=c.tap,
        )
        for c in candidates
    ]
    order = {name: rank for rank, name in enumerate(sorted(reached, key=reached.__getitem__))}
    return tuple(sorted(points, key=lambda point: order[point.id]))


def forward_flops(architecture: Architecture, image_size: ImageSize | None = None, batch: int = 1) -> int:
    """FLOPs of one denoiser forward (convolutions, linear layers, attention products) at
    ``image_size`` for ``batch`` images, counted on the meta device (no weights)."""
    denoiser = architecture.build_denoiser(device="meta")
    latent_hw = architecture.latent_size(image_size)  # outside the meta device: it may run the pipeline (generic)
    with torch.device("meta"):
        sample = torch.zeros(batch, architecture.latent_channels, *latent_hw)
        timestep = torch.ones(batch) if architecture.flow else torch.ones(batch, dtype=torch.long)
    args, kwargs = architecture.dummy_inputs(sample, timestep)
    tally = _FlopTally(denoiser)
    try:
        with torch.no_grad():
            denoiser(*args, **kwargs)
    finally:
        tally.remove()
    return tally.total


class _FlopTally:
    """Counts the FLOPs of convolutions, linear layers and attention products during a forward.

    Norms and elementwise operations are left out (well under 1% of a UNet's FLOPs). Works on
    the meta device, where it only reads shapes.
    """

    def __init__(self, model: nn.Module) -> None:
        self.total = 0
        self.modules = dict(model.named_modules())
        self.handles: list[Any] = []
        for module in self.modules.values():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                self.handles.append(module.register_forward_hook(self._count_layer))
            elif hasattr(module, "to_q") and hasattr(module, "heads"):  # diffusers' Attention, FluxAttention
                self.handles.append(module.register_forward_hook(self._count_attention, with_kwargs=True))

    def _count_layer(self, module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            fan_in = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        else:
            fan_in = module.in_features
        self.total += 2 * output.numel() * fan_in

    def _count_attention(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        context = args[1] if len(args) > 1 and isinstance(args[1], torch.Tensor) else kwargs.get("encoder_hidden_states")
        batch = hidden.shape[0]
        query_len = hidden.shape[1] if hidden.ndim == 3 else hidden.shape[-1] * hidden.shape[-2]
        key_len = context.shape[1] if context is not None else query_len
        if context is not None and getattr(module, "add_q_proj", None) is not None:  # joint: one sequence
            query_len = key_len = query_len + context.shape[1]
        elif context is not None and getattr(module, "add_k_proj", None) is not None:  # added text keys (IF)
            key_len = query_len + context.shape[1]
        inner = getattr(module, "inner_dim", None) or getattr(getattr(module, "to_q", None), "out_features", None)
        inner = inner or hidden.shape[-1]  # fused projections: the width of the tokens
        self.total += 2 * 2 * batch * query_len * key_len * int(inner)  # q·kᵀ and p·v

    def record_when_reached(self, candidates: list[DiscoveredPoint], reached: dict[str, int]) -> None:
        """Store in ``reached[id]`` the FLOPs done when each candidate's value first exists."""
        by_hook: dict[tuple[str, bool], list[str]] = {}
        for candidate in candidates:
            is_input = candidate.tap.kind in (TapKind.INPUT, TapKind.INPUT_TOKENS)
            by_hook.setdefault((candidate.tap.module, is_input), []).append(candidate.id)
        for (path, is_input), names in by_hook.items():
            module = self.modules[path]

            def hook(*_: Any, names: list[str] = names, **__: Any) -> None:
                for name in names:
                    reached.setdefault(name, self.total)

            register = module.register_forward_pre_hook if is_input else module.register_forward_hook
            self.handles.append(register(hook))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def list_activations(
    model: str | ModelSpec | Architecture, image_size: ImageSize | None = None
) -> list[ActivationPoint]:
    """Every activation point of ``model``, in forward order, with shapes at ``image_size``.

    Args:
        model: a ``--model`` reference (registry name, hub id, local folder), a resolved
            :class:`ModelSpec`, or an :class:`Architecture`.
        image_size: image side in pixels (int) or ``(height, width)``; default: native.

    Returns:
        The points, ordered by depth (the order in which a forward produces them).

    Raises:
        UnknownModelError, NotAPipelineError, WeightsUnavailableError: see ``resolve_model``
            and ``load_architecture``.
        InvalidInputError: an image side is not a multiple of the VAE scale factor.

    Example:
        >>> points = list_activations("sd15")
        >>> len(points), points[0].id, (points[-1].channels, points[-1].height)
        (197, 'unet-in', (4, 64))
    """
    if isinstance(model, str):
        model = resolve_model(model)
    architecture = model if isinstance(model, Architecture) else load_architecture(model)
    return measure_catalogue(architecture, image_size)


def select_activations(
    points: Iterable[ActivationPoint], selectors: Iterable[str], model_name: str = "MODEL"
) -> list[ActivationPoint]:
    """Resolve ids and globs (``up-level1-*-cross-q``) against a catalogue.

    Args:
        points: the catalogue (``list_activations``).
        selectors: exact ids or shell-style globs; each must match at least one point.
        model_name: used in the error's hint (``autosel catalog --model MODEL``).

    Returns:
        The matching points, deduplicated, in forward order (the last one is the deepest).

    Raises:
        UnknownActivationError: a selector matches nothing; names the closest ids.
    """
    catalogue = list(points)
    ids = [point.id for point in catalogue]
    known = set(ids)
    chosen: set[str] = set()
    for selector in selectors:
        matched = fnmatch.filter(ids, selector) if any(ch in selector for ch in "*?[") else [selector]
        matched = [name for name in matched if name in known]
        if not matched:
            raise unknown_activation(selector, ids, model_name, where="activation ")
        chosen.update(matched)
    return [point for point in catalogue if point.id in chosen]
