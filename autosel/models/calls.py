"""The denoiser's call, taken from the pipeline's own ``__call__`` and replayed with autosel's input.

The generic path (:mod:`autosel.models.families.generic`) writes nothing per model about
conditioning, latent packing or the timestep's scale. It runs the pipeline's text-to-image
``__call__`` for one step with a forward pre-hook on the denoiser that records the arguments
of its first call and ends the call there: the denoiser itself never runs. What the pipeline
computed for that call is what autosel replays:

- every argument but the latent and the timestep is conditioning, used as recorded (text
  embeddings, masks, pooled vectors, position ids, image shapes…); a second recording at
  batch 2 tells which of them carry the batch, so that they can be grown to any batch;
- the latent's layout (4-D, with a frame axis, packed into p×p patch tokens, a list per image)
  is read from the recorded argument's shape and checked against the pipeline's own noise draw
  where its values are float32 (a permutation of the seeded draw);
- for rectified-flow schedulers the call is made with ``sigmas=[t/1000]``: the scheduler the
  pipeline configured (static or resolution-dependent shift) turns it into σ, and the recorded
  timestep argument is the denoiser's own timestep input (σ, σ·1000, 1−σ…); a pipeline that
  takes ``timesteps`` beside ``sigmas`` (CogView4: its denoiser is told the unshifted t while
  σ is shifted) is also given ``timesteps=[t]``, and one that refuses both at once gets
  ``sigmas`` alone;
  for DDPM schedulers the timestep input is ``t`` and noise follows the training betas.

Classifier-free guidance is left off (a guidance scale that disables it is tried when the
recorded batch comes doubled): features are taken from the conditional branch.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from autosel.errors import UnsupportedModelError

LATENT_SEED = 1234
"""Seed of the generator handed to the pipeline for its (discarded) noise draw."""


class _Recorded(Exception):
    """Raised by the pre-hook to end the pipeline's call once the denoiser's arguments are in."""

    def __init__(self, arguments: dict[str, Any]) -> None:
        super().__init__("recorded")
        self.arguments = arguments


@dataclass(frozen=True)
class LatentLayout:
    """How a B×C×h×w latent becomes the denoiser's latent argument.

    Attributes:
        kind: ``image`` (B×C×h×w as is), ``frames`` (a singleton frame axis at ``axis``),
            ``tokens`` (p×p patches packed into B×(h/p·w/p)×(C·p²), diffusers' ``_pack_latents``).
        patch: p for ``tokens`` (1 otherwise).
        axis: where ``frames`` puts its axis.
        per_image: the argument is a list of per-image tensors (no batch axis).
    """

    kind: str
    patch: int = 1
    axis: int = 2
    per_image: bool = False

    def pack(self, latents: torch.Tensor) -> Any:
        """The denoiser's latent argument for B×C×h×w ``latents``."""
        rows, channels, height, width = latents.shape
        if self.kind == "frames":
            packed = latents.unsqueeze(self.axis)
        elif self.kind == "tokens":
            p = self.patch
            packed = (
                latents.reshape(rows, channels, height // p, p, width // p, p)
                .permute(0, 2, 4, 1, 3, 5)
                .reshape(rows, (height // p) * (width // p), channels * p * p)
            )
        else:
            packed = latents
        return list(packed.unbind(0)) if self.per_image else packed

    @classmethod
    def infer(cls, value: Any, channels: int, latent_hw: tuple[int, int], name: str) -> LatentLayout:
        """The layout whose :meth:`pack` gives ``value``'s shape for one C×h×w latent.

        Raises:
            UnsupportedModelError: no known layout fits (names the argument and its shape).
        """
        per_image = isinstance(value, (list, tuple))
        tensor = value[0] if per_image else value
        shape = tuple(tensor.shape) if per_image else tuple(tensor.shape[1:])
        height, width = latent_hw
        if shape == (channels, height, width):
            return cls("image", per_image=per_image)
        for axis in (1, 2, 3):
            frames = [channels, height, width]
            frames.insert(axis - 1, 1)
            if shape == tuple(frames):
                return cls("frames", axis=axis, per_image=per_image)
        if len(shape) == 2:
            tokens, depth = shape
            patch = math.isqrt(max(depth // max(channels, 1), 1))
            if patch * patch * channels == depth and tokens == (height // patch) * (width // patch):
                return cls("tokens", patch=patch, per_image=per_image)
        raise UnsupportedModelError(
            f"the denoiser's latent argument '{name}' has shape {shape} for a {channels}x{height}x{width} "
            "latent: no known packing (as is, a frame axis, p×p patch tokens) fits"
        )


@dataclass
class RecordedCall:
    """One recorded denoiser call, ready to be replayed at any batch with other latents.

    Attributes:
        arguments: the call's arguments by parameter name (batch 1, conditional branch).
        latent: the name of the latent argument.
        timestep: the name of the timestep argument.
        layout: how a B×C×h×w latent becomes the latent argument.
        batched: names (and ``name[i]`` paths into tuples) whose leading axis or length is the batch.
        sigma: σ the scheduler set for this call (rectified flow); ``None`` for DDPM schedulers.
        signature: the denoiser forward's signature (to split positional and keyword arguments).
    """

    arguments: dict[str, Any]
    latent: str
    timestep: str
    layout: LatentLayout
    batched: frozenset[str]
    sigma: float | None
    signature: inspect.Signature = field(repr=False)

    def replay(self, latents: torch.Tensor, timestep: torch.Tensor) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Positional and keyword arguments for B×C×h×w ``latents`` and a B-row ``timestep``."""
        rows = len(latents)
        values: dict[str, Any] = {}
        for name, value in self.arguments.items():
            if name == self.latent:
                values[name] = self.layout.pack(latents)
            elif name == self.timestep:
                values[name] = timestep
            elif name in self.batched:
                values[name] = _to_device(_grow(value, rows, name, self.batched), latents.device)
            else:
                values[name] = _to_device(value, latents.device)
        bound = inspect.BoundArguments(self.signature, values)  # type: ignore[arg-type]
        return tuple(bound.args), dict(bound.kwargs)

    def timestep_input(self, rows: int, device: torch.device | str) -> torch.Tensor:
        """The recorded timestep input repeated to ``rows`` rows."""
        value = self.arguments[self.timestep]
        value = value if isinstance(value, torch.Tensor) else torch.tensor([value])
        value = value.reshape(-1)[:1]
        return value.to(device).expand(rows).clone()

    def on_meta(self) -> RecordedCall:
        """The same call for shape-only forwards: floating-point tensors on the meta device.

        Integer and boolean tensors (masks, ids) stay real: a denoiser may read them as data
        (Lumina 2 counts each caption's tokens from its mask); a meta forward runs them through
        :class:`autosel.models.families.generic.RealOnMeta`.
        """
        return RecordedCall(
            {name: _to_meta(value) for name, value in self.arguments.items()}, self.latent, self.timestep,
            self.layout, self.batched, self.sigma, self.signature,
        )


def _grow(value: Any, rows: int, name: str, batched: frozenset[str]) -> Any:
    if isinstance(value, torch.Tensor):
        return value.expand(rows, *value.shape[1:]).contiguous() if value.shape[0] == 1 else value
    if isinstance(value, list):
        return [value[0]] * rows if len(value) == 1 else value
    if isinstance(value, tuple):
        return tuple(_grow(item, rows, f"{name}[{i}]", batched) if f"{name}[{i}]" in batched else item
                     for i, item in enumerate(value))
    return value


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        if value.device == device or (device.type == "meta" and not _is_float(value)):
            return value
        return value.to(device)
    if isinstance(value, list):
        return [_to_device(item, device) for item in value]
    if isinstance(value, tuple):
        return tuple(_to_device(item, device) for item in value)
    if isinstance(value, dict):
        return {key: _to_device(item, device) for key, item in value.items()}
    return value


def _is_float(value: torch.Tensor) -> bool:
    return value.is_floating_point() or value.is_complex()


def _to_meta(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return torch.empty_like(value, device="meta") if _is_float(value) else value
    if isinstance(value, list):
        return [_to_meta(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_to_meta(item) for item in value)
    if isinstance(value, dict):
        return {key: _to_meta(item) for key, item in value.items()}
    return value


def is_flow_scheduler(scheduler: Any) -> bool:
    """``True`` for rectified-flow schedulers (flow matching, or DPM-Solver on flow sigmas)."""
    config = getattr(scheduler, "config", {})
    return (
        type(scheduler).__name__.startswith("FlowMatch")
        or bool(config.get("use_flow_sigmas"))
        or config.get("prediction_type") == "flow_prediction"
    )


class CallRecorder:
    """Records a pipeline's denoiser calls, once per prompt, image size and timestep.

    Args:
        pipeline: a text-to-image diffusers pipeline (weights real, random or on the meta device).
        component: the pipeline attribute holding the denoiser (``transformer`` or ``unet``).
    """

    def __init__(self, pipeline: Any, component: str = "transformer") -> None:
        self.pipeline = pipeline
        self.component = component
        self.denoiser = getattr(pipeline, component)
        self.signature = inspect.signature(self.denoiser.forward)
        self.flow = is_flow_scheduler(pipeline.scheduler)
        self.num_train_timesteps = int(pipeline.scheduler.config.get("num_train_timesteps", 1000))
        self._calls: dict[tuple[str, tuple[int, int], int | None], RecordedCall] = {}
        self._batched: dict[tuple[str, tuple[int, int]], frozenset[str]] = {}
        self._overrides: dict[str, Any] | None = None
        self._pairs_timesteps: bool | None = None
        self.context: Any = contextlib.nullcontext
        """A context-manager factory around every pipeline call (the engine puts the text
        encoders on the denoiser's device there)."""

    @property
    def vae_scale_factor(self) -> int:
        """Image pixels per latent pixel, as the pipeline computes it."""
        factor = getattr(self.pipeline, "vae_scale_factor", None)
        return int(factor) if factor else 1

    def call(self, prompt: str, image_hw: tuple[int, int], timestep: int | None = None) -> RecordedCall:
        """The denoiser's call for ``prompt`` at ``image_hw`` pixels, at ``timestep`` (0…N−1)
        for rectified-flow pipelines (the conditioning of DDPM ones does not depend on it)."""
        key = (prompt, tuple(image_hw), timestep if self.flow else None)
        if key not in self._calls:
            arguments, sigma = self._record(prompt, image_hw, key[2], batch=1)
            batched = self._batched_names(prompt, image_hw, arguments)
            latent, timestep_name = self._roles(arguments, image_hw)
            channels = _latent_channels(arguments[latent], image_hw, self.vae_scale_factor)
            latent_hw = (image_hw[0] // self.vae_scale_factor, image_hw[1] // self.vae_scale_factor)
            layout = LatentLayout.infer(arguments[latent], channels, latent_hw, latent)
            self._calls[key] = RecordedCall(
                arguments, latent, timestep_name, layout, batched, sigma, self.signature
            )
        return self._calls[key]

    def latent_channels(self, image_hw: tuple[int, int]) -> int:
        """Channels of the VAE latent the denoiser's latent argument is made of."""
        recorded = self.call("", image_hw, self.num_train_timesteps // 2)
        return _latent_channels(recorded.arguments[recorded.latent], image_hw, self.vae_scale_factor)

    # -- recording -----------------------------------------------------------------------

    def _batched_names(self, prompt: str, image_hw: tuple[int, int], single: dict[str, Any]) -> frozenset[str]:
        key = (prompt, tuple(image_hw))
        if key not in self._batched:
            double, _ = self._record(prompt, image_hw, self.num_train_timesteps // 2 if self.flow else None, batch=2)
            names = set()
            for name, value in single.items():
                names |= _batched_paths(name, value, double.get(name))
            self._batched[key] = frozenset(names)
        return self._batched[key]

    def _roles(self, arguments: Mapping[str, Any], image_hw: tuple[int, int]) -> tuple[str, str]:
        names = list(arguments)
        timestep = next((n for n in ("timestep", "timesteps", "t") if n in arguments), None)
        if timestep is None:
            raise UnsupportedModelError(
                f"{type(self.denoiser).__name__}.forward takes no timestep argument (found: {', '.join(names)})"
            )
        latent = next((n for n in ("hidden_states", "sample", "x", "latents") if n in arguments), names[0])
        return latent, timestep

    def _record(
        self, prompt: str, image_hw: tuple[int, int], timestep: int | None, batch: int
    ) -> tuple[dict[str, Any], float | None]:
        candidates = list(self._candidate_overrides())
        first_error: Exception | None = None
        for number, overrides in enumerate(candidates):
            try:
                arguments, sigma = self._record_once(prompt, image_hw, timestep, batch, overrides)
            except Exception as error:  # e.g. the negative branch of guidance failing: try guidance off
                if isinstance(error, UnsupportedModelError) or number == len(candidates) - 1:
                    raise (first_error or error)
                first_error = first_error or error
                continue
            latent = next((n for n in ("hidden_states", "sample", "x", "latents") if n in arguments), next(iter(arguments)))
            if _rows(arguments[latent]) == batch:
                self._overrides = overrides
                return arguments, sigma
        raise UnsupportedModelError(
            f"{type(self.pipeline).__name__} runs its denoiser on a doubled batch (classifier-free guidance) "
            "with every guidance setting tried: autosel cannot take the conditional branch alone"
        )

    def _candidate_overrides(self) -> Iterator[dict[str, Any]]:
        if self._overrides is not None:
            yield self._overrides
            return
        parameters = inspect.signature(self.pipeline.__call__).parameters
        yield {}
        if "guidance_scale" in parameters:
            yield {"guidance_scale": 1.0}
            yield {"guidance_scale": 0.0}

    def _record_once(
        self, prompt: str, image_hw: tuple[int, int], timestep: int | None, batch: int, overrides: Mapping[str, Any]
    ) -> tuple[dict[str, Any], float | None]:
        parameters = inspect.signature(self.pipeline.__call__).parameters
        height, width = image_hw
        kwargs: dict[str, Any] = {
            "prompt": [prompt] * batch, "height": height, "width": width, "num_inference_steps": 1,
            "output_type": "latent", "generator": torch.Generator("cpu").manual_seed(LATENT_SEED),
        }
        # a negative prompt is left at the pipeline's own default (Sana's "" is a string it lowercases)
        if "use_resolution_binning" in parameters:  # else the size is snapped to a trained aspect-ratio bin
            kwargs["use_resolution_binning"] = False
        kwargs.update(overrides)
        sigma_fraction = None
        if self.flow and timestep is not None:
            sigma_fraction = timestep / self.num_train_timesteps
            if "sigmas" not in parameters:
                raise UnsupportedModelError(
                    f"{type(self.pipeline).__name__}.__call__ takes no 'sigmas': autosel cannot set the noise level "
                    "of its rectified-flow scheduler to a chosen timestep"
                )
            kwargs["sigmas"] = [sigma_fraction]
            if "timesteps" in parameters and self._pairs_timesteps is not False:
                kwargs["timesteps"] = [timestep]
        kwargs = {name: value for name, value in kwargs.items() if name in parameters}
        sigmas_seen: list[float] = []

        def hook(module: torch.nn.Module, args: tuple[Any, ...], hook_kwargs: dict[str, Any]) -> None:
            bound = self.signature.bind(*args, **hook_kwargs)
            if sigma_fraction is not None:  # read now: the scheduler in use is restored after the call
                sigmas_seen.append(_first_sigma(self.pipeline.scheduler))
            raise _Recorded(dict(bound.arguments))

        handle = self.denoiser.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            with self.context(), _flow_scheduler_for_sigmas(self.pipeline, self.flow and "sigmas" in kwargs), torch.no_grad():
                self.pipeline(**kwargs)
        except _Recorded as recorded:
            sigma = sigmas_seen[0] if sigmas_seen else None
            if sigma_fraction == 0:
                sigma = 0.0
            if "timesteps" in kwargs:
                self._pairs_timesteps = True
            return recorded.arguments, sigma
        except ValueError:
            # most pipelines take sigmas or timesteps, not both ("Only one of `timesteps` or `sigmas`…")
            if "timesteps" not in kwargs or self._pairs_timesteps is not None:
                raise
            self._pairs_timesteps = False
        finally:
            handle.remove()
        if self._pairs_timesteps is False and "timesteps" in kwargs:
            return self._record_once(prompt, image_hw, timestep, batch, overrides)
        raise UnsupportedModelError(
            f"{type(self.pipeline).__name__}'s __call__ finished without calling its {self.component}"
        )


@contextlib.contextmanager
def _flow_scheduler_for_sigmas(pipeline: Any, needed: bool) -> Iterator[None]:
    """The scheduler the recording runs with, when it is given ``sigmas=[t/1000]``.

    Schedulers that take no custom sigmas (DPM-Solver on flow sigmas, as Sana ships) are
    replaced, for the recording only, by the flow-matching Euler scheduler of the same shift.
    A ``shift_terminal`` (Qwen-Image's 0.02) is switched off: it stretches a sampling
    trajectory so that its *last* step ends there, which on a one-step schedule would put
    every t at σ = shift_terminal; the noise level of t is the shift alone.
    """
    scheduler = pipeline.scheduler
    config = scheduler.config
    if not needed:
        yield
        return
    if "sigmas" in inspect.signature(scheduler.set_timesteps).parameters:
        if not config.get("shift_terminal"):
            yield
            return
        replacement = type(scheduler).from_config(config, shift_terminal=None)
    else:
        from diffusers import FlowMatchEulerDiscreteScheduler

        replacement = FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=int(config.get("num_train_timesteps", 1000)),
            shift=float(config.get("flow_shift") or config.get("shift") or 1.0),
        )
    pipeline.scheduler = replacement
    try:
        yield
    finally:
        pipeline.scheduler = scheduler


def _first_sigma(scheduler: Any) -> float:
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is None or len(sigmas) == 0:
        raise UnsupportedModelError(f"{type(scheduler).__name__} set no sigmas: cannot tell σ for the timestep")
    return float(sigmas[0])


def _rows(value: Any) -> int:
    if isinstance(value, (list, tuple)):
        return len(value)
    return int(value.shape[0])


def _batched_paths(name: str, single: Any, double: Any) -> set[str]:
    if isinstance(single, torch.Tensor) and isinstance(double, torch.Tensor):
        return {name} if single.ndim and double.ndim and single.shape[0] == 1 and double.shape[0] == 2 else set()
    if isinstance(single, list) and isinstance(double, list):
        return {name} if len(single) == 1 and len(double) == 2 else set()
    if isinstance(single, tuple) and isinstance(double, tuple) and len(single) == len(double):
        paths = set()
        for index, (one, two) in enumerate(zip(single, double)):
            inner = _batched_paths(f"{name}[{index}]", one, two)
            paths |= inner
        return paths | ({name} if paths else set())
    return set()


def _latent_channels(value: Any, image_hw: tuple[int, int], vae_scale_factor: int) -> int:
    tensor = value[0] if isinstance(value, (list, tuple)) else value[0]
    pixels = (image_hw[0] // vae_scale_factor) * (image_hw[1] // vae_scale_factor)
    return int(tensor.numel() // max(pixels, 1))
