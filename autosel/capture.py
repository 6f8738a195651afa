"""Capture named activations of a denoiser with forward hooks, as B×C×H×W tensors.

A :class:`Tap` says where a value lives (a module path) and how to read it (the module's
output or input, a token sequence to fold back onto the latent grid, or an attention map
recomputed from the captured query and key). :class:`ActivationCapture` registers exactly the
hooks the requested taps need and removes them on exit, even on error; nothing in diffusers
is copied or patched, and attention processors are left as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
from torch import nn

_MAP_ELEMENTS_AT_ONCE = 1 << 26
"""Attention maps up to this many elements (256 MB in float32) are computed for all heads at once."""


class TapKind(str, Enum):
    """How a captured value is read from its module."""

    OUTPUT = "output"
    """The module's output, already B×C×H×W (first element of a tuple output)."""
    INPUT = "input"
    """The module's first positional input (or its ``hidden_states`` keyword); a denoiser's
    latent argument is brought back onto the latent grid, B×C×H×W (see :attr:`Tap.patch`)."""
    TOKENS = "tokens"
    """The module's B×N×C token output, folded to B×C×H×W on the token grid."""
    INPUT_TOKENS = "input-tokens"
    """The module's B×N×C token input (first positional or ``hidden_states``), folded like TOKENS."""
    ATTENTION_MAP = "attention-map"
    """softmax(q·kᵀ·scale) of an ``Attention`` module averaged over heads: B×Nk×H×W, one
    channel per key token (image positions for self-attention, text tokens for cross)."""


@dataclass(frozen=True)
class Tap:
    """Where one activation lives inside the denoiser.

    Attributes:
        module: dotted module path, as in ``denoiser.named_modules()``.
        kind: how the value is read (see :class:`TapKind`).
        grid_from: for tokens and maps, the path of the module whose B×C×H×W input defines
            the token grid (the enclosing ``Transformer2DModel``); ``None`` for diffusion
            transformers, whose grid (latent size ÷ patch) is set per forward by the caller
            (:attr:`ActivationCapture.token_grid`).
        scale: a factor applied to the value (``1/output_scale_factor`` for resnet increments).
        index: which element of a tuple output holds the value (joint-attention blocks return
            ``(text, image)``).
        patch: for an ``INPUT`` holding a packed latent (a denoiser's own input), the side p of
            the latent patches it packs: B×N×(C·p²) tokens on the token grid, or B×(C·p²)×h/p×w/p
            channels, unpacked to B×C×h×w; a singleton frame axis and a per-image list are
            undone at any p.

    Token sequences longer than the grid hold text tokens too (FLUX's single-stream blocks
    run on ``[text, image]``): only the H·W image tokens are kept, the last ones, or the first
    ones with ``image_first`` (Z-Image's and Lumina 2's joint sequences start with the image).
    """

    module: str
    kind: TapKind
    grid_from: str | None = None
    scale: float = 1.0
    index: int = 0
    image_first: bool = False
    patch: int = 1


class StopForward(Exception):
    """Raised inside a hook to end the forward once every requested activation is captured."""


class ActivationCapture:
    """Context manager that captures the activations named by ``taps`` during forwards.

    Args:
        denoiser: the model to hook (e.g. a ``UNet2DConditionModel``).
        taps: ``{activation_id: Tap}``; the returned dict keeps this order.
        stop_early: end the forward (with :class:`StopForward`, caught by :meth:`run`) as soon
            as every requested activation has been captured.

    Example:
        >>> with ActivationCapture(unet, {"mid-repeat0-res-out": tap}) as capture:
        ...     features = capture.run(latents, t, encoder_hidden_states=text)
        >>> features["mid-repeat0-res-out"].shape
        torch.Size([1, 1280, 8, 8])
    """

    def __init__(self, denoiser: nn.Module, taps: Mapping[str, Tap], stop_early: bool = False) -> None:
        self.denoiser = denoiser
        self.taps = dict(taps)
        self.stop_early = stop_early
        self.features: dict[str, torch.Tensor] = {}
        self.token_grid: tuple[int, int] | None = None
        """(H, W) of the token grid of taps without ``grid_from`` (set before :meth:`run`)."""
        self._modules = dict(denoiser.named_modules())
        self._grids: dict[str, tuple[int, int]] = {}
        self._stash: dict[tuple[str, str], torch.Tensor] = {}
        self._handles: list[Any] = []
        needed = {tap.module for tap in self.taps.values()}
        needed |= {tap.grid_from for tap in self.taps.values() if tap.grid_from}
        missing = sorted(needed - set(self._modules))
        if missing:
            raise ValueError(f"modules not found in the denoiser: {', '.join(missing[:5])}")

    def __enter__(self) -> ActivationCapture:
        try:
            self._register()
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._remove()

    def run(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Call the denoiser and return the captured activations, in ``taps`` order.

        Raises:
            RuntimeError: a requested activation did not fire during the forward.
        """
        self.features = {}
        try:
            self.denoiser(*args, **kwargs)
        except StopForward:
            pass
        finally:
            self._grids.clear()
            self._stash.clear()
        missing = [name for name in self.taps if name not in self.features]
        if missing:
            raise RuntimeError(f"activations did not fire during the forward: {', '.join(missing[:5])}")
        features, self.features = {name: self.features[name] for name in self.taps}, {}
        return features

    # -- hook registration -------------------------------------------------------------

    def _register(self) -> None:
        by_module: dict[str, list[tuple[str, Tap]]] = {}
        for name, tap in self.taps.items():
            by_module.setdefault(tap.module, []).append((name, tap))
        grid_modules = dict.fromkeys(tap.grid_from for tap in self.taps.values() if tap.grid_from)
        for path in grid_modules:
            self._hook(path, pre=True, fn=self._grid_hook(path))
        for path, named_taps in by_module.items():
            inputs = [(n, t) for n, t in named_taps if t.kind in _INPUT_KINDS]
            outputs = [(n, t) for n, t in named_taps if t.kind not in _INPUT_KINDS]
            if inputs:
                self._hook(path, pre=True, fn=self._input_hook(inputs), with_kwargs=True)
            if any(t.kind is TapKind.ATTENTION_MAP for _, t in outputs):
                for projection in ("to_q", "to_k"):
                    self._hook(f"{path}.{projection}", pre=False, fn=self._stash_hook(path, projection))
            if outputs:
                self._hook(path, pre=False, fn=self._output_hook(path, outputs))

    def _hook(self, path: str, pre: bool, fn: Any, with_kwargs: bool = False) -> None:
        module = self._modules[path]
        if pre:
            handle = module.register_forward_pre_hook(fn, with_kwargs=with_kwargs)
        else:
            handle = module.register_forward_hook(fn)
        self._handles.append(handle)

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._grids.clear()
        self._stash.clear()

    # -- hooks ---------------------------------------------------------------------------

    def _grid_hook(self, path: str):
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            hidden = args[0] if args else None
            if isinstance(hidden, torch.Tensor) and hidden.ndim == 4:
                self._grids[path] = (int(hidden.shape[-2]), int(hidden.shape[-1]))

        return hook

    def _input_hook(self, named_taps: list[tuple[str, Tap]]):
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            value = args[0] if args else kwargs.get("hidden_states", kwargs.get("sample", kwargs.get("x")))
            if isinstance(value, (list, tuple)):  # one latent per image (Z-Image's denoiser)
                value = torch.stack(list(value))
            for name, tap in named_taps:
                self._store(name, tap, value)

        return hook

    def _stash_hook(self, attention: str, projection: str):
        def hook(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
            self._stash[(attention, projection)] = output.detach()

        return hook

    def _output_hook(self, path: str, named_taps: list[tuple[str, Tap]]):
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            for name, tap in named_taps:
                if tap.kind is TapKind.ATTENTION_MAP:
                    value = self._attention_map(path, module, tap)
                else:
                    value = _tensor_at(output, tap.index)
                self._store(name, tap, value)

        return hook

    # -- values --------------------------------------------------------------------------

    def _store(self, name: str, tap: Tap, value: torch.Tensor) -> None:
        value = value.detach()
        if tap.kind in (TapKind.TOKENS, TapKind.INPUT_TOKENS):
            grid = self._grid(tap)
            if value.ndim == 3 and value.shape[1] < grid[0] * grid[1]:
                # a module shared by the text and image streams (CogView4's feed-forward runs on
                # each in turn): its text-only call holds no image token; run() still fails if
                # the image call never comes
                return
            value = _fold_tokens(value, grid, tap.image_first)
        elif tap.kind is TapKind.INPUT and (value.ndim != 4 or tap.patch > 1):
            value = _onto_latent_grid(value, tap, self._grid(tap) if value.ndim == 3 else None)
        if tap.scale != 1.0:
            value = value * tap.scale
        self.features[name] = value
        if self.stop_early and len(self.features) == len(self.taps):
            raise StopForward

    def _grid(self, tap: Tap) -> tuple[int, int]:
        if tap.grid_from is None:
            if self.token_grid is None:
                raise RuntimeError(f"no token grid set for {tap.module} (set ActivationCapture.token_grid)")
            return self.token_grid
        if tap.grid_from not in self._grids:
            raise RuntimeError(f"no token grid recorded for {tap.module} (grid module {tap.grid_from} did not run)")
        return self._grids[tap.grid_from]

    def _attention_map(self, path: str, attention: nn.Module, tap: Tap) -> torch.Tensor:
        query = self._stash.pop((path, "to_q"))
        key = self._stash.pop((path, "to_k"))
        heads = int(attention.heads)
        batch, query_len, _ = query.shape
        key_len = key.shape[1]
        query = query.float().view(batch, query_len, heads, -1).transpose(1, 2)
        key = key.float().view(batch, key_len, heads, -1).transpose(1, 2)
        if getattr(attention, "norm_q", None) is not None:
            query = attention.norm_q(query)
        if getattr(attention, "norm_k", None) is not None:
            key = attention.norm_k(key)
        scale = float(attention.scale)
        if query.device.type == "meta" or batch * heads * query_len * key_len <= _MAP_ELEMENTS_AT_ONCE:
            mean_map = ((query @ key.transpose(-1, -2)) * scale).softmax(dim=-1).mean(dim=1)
        else:  # one head at a time keeps peak memory at B×Nq×Nk instead of B×heads×Nq×Nk
            mean_map = torch.zeros(batch, query_len, key_len, device=query.device)
            for head in range(heads):
                mean_map += ((query[:, head] @ key[:, head].transpose(-1, -2)) * scale).softmax(dim=-1)
            mean_map /= heads
        height, width = self._grid(tap)
        return mean_map.transpose(1, 2).reshape(batch, key_len, height, width)


_INPUT_KINDS = (TapKind.INPUT, TapKind.INPUT_TOKENS)


def _tensor_at(output: Any, index: int) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and len(output) > index and isinstance(output[index], torch.Tensor):
        return output[index]
    sample = getattr(output, "sample", None)
    if isinstance(sample, torch.Tensor):
        return sample
    raise TypeError(f"cannot read a tensor from a module output of type {type(output).__name__}")


def _onto_latent_grid(value: torch.Tensor, tap: Tap, grid: tuple[int, int] | None) -> torch.Tensor:
    """A denoiser's latent argument as the B×C×h×w latent it packs (the inverse of the packings
    of :class:`autosel.models.calls.LatentLayout`)."""
    if value.ndim == 5:  # a singleton frame axis (video-style latents)
        axis = next((axis for axis in (2, 1, 3) if value.shape[axis] == 1), None)
        if axis is None:
            raise RuntimeError(f"{tuple(value.shape)} input of {tap.module or 'the denoiser'} has no single frame")
        value = value.squeeze(axis)
    patch = tap.patch
    if value.ndim == 3 and grid is not None:  # p×p patch tokens (FLUX's 2×2 packing)
        height, width = grid
        tokens = _fold_tokens(value, grid, tap.image_first).flatten(2).transpose(1, 2)
        batch, _, depth = tokens.shape
        return (tokens.reshape(batch, height, width, depth // (patch * patch), patch, patch)
                .permute(0, 3, 1, 4, 2, 5).reshape(batch, depth // (patch * patch), height * patch, width * patch))
    if value.ndim == 4 and patch > 1:  # p×p patches in channels
        return torch.nn.functional.pixel_shuffle(value, patch)
    return value


def _fold_tokens(tokens: torch.Tensor, grid: tuple[int, int], image_first: bool = False) -> torch.Tensor:
    height, width = grid
    batch, length, channels = tokens.shape
    if length > height * width:  # joint sequences hold text (and padding) tokens too: keep the image's
        tokens = tokens[:, : height * width] if image_first else tokens[:, length - height * width :]
    elif length != height * width:
        raise RuntimeError(f"{length} tokens do not fill a {height}x{width} grid")
    return tokens.transpose(1, 2).reshape(batch, channels, height, width)
