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
  ``sigmas`` alone; a pipeline whose ``__call__`` takes no ``sigmas`` (it builds its own
  schedule) has its scheduler's ``set_timesteps`` given ``sigmas=[t/1000]`` for the recording;
  for DDPM schedulers the timestep input is ``t`` and noise follows the training betas.

Classifier-free guidance is left off (a guidance scale that disables it is tried when the
recorded batch comes doubled): features are taken from the conditional branch.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from autosel.errors import UnsupportedModelError

LATENT_SEED = 1234
"""Seed of the generator handed to the pipeline for its (discarded) noise draw."""

_PIPELINE_DEFAULT = object()
"""An override value meaning "leave this ``__call__`` parameter at the pipeline's default"."""


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
            ``tokens`` (p×p patches packed into B×(h/p·w/p)×(C·p²), diffusers' ``_pack_latents``),
            ``unshuffle`` (p×p patches folded into channels, B×(C·p²)×(h/p)×(w/p), as
            ``pixel_unshuffle`` and diffusers' ``_patchify_latents``).
        patch: p for ``tokens`` and ``unshuffle`` (1 otherwise).
        axis: where ``frames`` puts its axis.
        per_image: the argument is a list of per-image tensors (no batch axis).
        fixed: for ``tokens``, rows of the argument that are not the latent's (1×n×D, as
            recorded: a pipeline that puts the image tokens after a text-sized padding in
            one sequence), put before the image tokens (``fixed_first``) or after them.
    """

    kind: str
    patch: int = 1
    axis: int = 2
    per_image: bool = False
    fixed: torch.Tensor | None = field(default=None, compare=False, repr=False)
    fixed_first: bool = True

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
            if self.fixed is not None:
                fixed = self.fixed.to(device=latents.device, dtype=packed.dtype).expand(rows, -1, -1)
                packed = torch.cat([fixed, packed] if self.fixed_first else [packed, fixed], dim=1)
        elif self.kind == "unshuffle":
            packed = torch.nn.functional.pixel_unshuffle(latents, self.patch)
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
        for patch in (2, 4):
            if height % patch == 0 and width % patch == 0 and shape == (channels * patch * patch, height // patch, width // patch):
                return cls("unshuffle", patch=patch, per_image=per_image)
        if len(shape) == 2:
            tokens, depth = shape
            patch = math.isqrt(max(depth // max(channels, 1), 1))
            if patch * patch * channels == depth and tokens == (height // patch) * (width // patch):
                return cls("tokens", patch=patch, per_image=per_image)
        raise UnsupportedModelError(
            f"the denoiser's latent argument '{name}' has shape {shape} for a {channels}x{height}x{width} "
            "latent: no known packing (as is, a frame axis, p×p patch tokens, p×p patches in channels) fits"
        )


@dataclass
class RecordedCall:
    """One recorded denoiser call, ready to be replayed at any batch with other latents.

    Attributes:
        arguments: the call's arguments by parameter name (batch 1, conditional branch).
        latent: the name of the latent argument.
        timestep: the name of the timestep argument.
        layout: how a B×C×h×w latent becomes the latent argument.
        batched: names (and ``name[i]`` paths into tuples and lists, such as per-layer text
            states) whose leading axis or length is the batch.
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
        if any(f"{name}[{i}]" in batched for i in range(len(value))):  # a list of batched tensors (per layer)
            return [_grow(item, rows, f"{name}[{i}]", batched) if f"{name}[{i}]" in batched else item
                    for i, item in enumerate(value)]
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
        self._vae_factor: int | None = None
        self._vae_channels: int | None = None
        self._channels: dict[tuple[str, tuple[int, int], int | None], int] = {}
        self.context: Any = contextlib.nullcontext
        """A context-manager factory around every pipeline call (the engine puts the text
        encoders on the denoiser's device there)."""

    @property
    def vae_scale_factor(self) -> int:
        """Image pixels per latent pixel of the pipeline's VAE, measured by a shape-only encode
        (the latents autosel denoises are that VAE's); where it cannot be measured, the
        pipeline's own ``vae_scale_factor`` (some pipelines fold a 2×2 packing into theirs)."""
        if self._vae_factor is None:
            factor = getattr(self.pipeline, "vae_scale_factor", None)
            geometry = vae_latent_geometry(getattr(self.pipeline, "vae", None))
            self._vae_factor, self._vae_channels = geometry or (int(factor) if factor else 1, None)
        return self._vae_factor

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
            try:
                layout = LatentLayout.infer(arguments[latent], channels, latent_hw, latent)
            except UnsupportedModelError as error:
                layout, channels = self._other_layout(arguments[latent], latent_hw, error)
            self._channels[key] = channels
            self._calls[key] = RecordedCall(
                arguments, latent, timestep_name, layout, batched, sigma, self.signature
            )
        return self._calls[key]

    def latent_channels(self, image_hw: tuple[int, int]) -> int:
        """Channels of the VAE latent the denoiser's latent argument is made of."""
        key = ("", tuple(image_hw), self.num_train_timesteps // 2 if self.flow else None)
        self.call(*key)
        return self._channels[key]

    def _other_layout(self, value: Any, latent_hw: tuple[int, int], error: UnsupportedModelError) -> tuple[LatentLayout, int]:
        """The layout and channels of a latent argument that holds more or other than the
        requested latent, told by the VAE's channels:

        - a pipeline that chose the size itself (it rescales every request to its default
          area, or takes no height and width at all) gives an unpacked latent (B×C×h×w, or
          C×h×w per image) at another size: the denoiser takes it as is at any size;
        - a pipeline that puts the packed image tokens beside rows of its own (a padding for
          the text in one sequence) gives more tokens than the latent makes: the image rows are
          the part whose values are the pipeline's seeded noise draw, the rest is kept as
          recorded.

        Anything else is refused with ``error``."""
        per_image = isinstance(value, (list, tuple))
        tensor = value[0] if per_image else value
        shape = tuple(tensor.shape) if per_image else tuple(tensor.shape[1:])
        expected = self._vae_channels or self.denoiser.config.get("in_channels")
        if len(shape) == 3 and shape[0] == expected and shape[1:] != tuple(latent_hw):
            return LatentLayout("image", per_image=per_image), int(shape[0])
        if len(shape) == 2 and not per_image and self._vae_channels and len(tensor) == 1:
            tokens, depth = shape
            patch = math.isqrt(max(depth // self._vae_channels, 1))
            image_tokens = (latent_hw[0] // max(patch, 1)) * (latent_hw[1] // max(patch, 1))
            if patch * patch * self._vae_channels == depth and 0 < image_tokens < tokens:
                rows = tensor[0].detach().float().cpu()
                draw = torch.randn(image_tokens * depth, generator=torch.Generator("cpu").manual_seed(LATENT_SEED))
                for fixed_first in (True, False):
                    image = rows[tokens - image_tokens :] if fixed_first else rows[:image_tokens]
                    fixed = rows[: tokens - image_tokens] if fixed_first else rows[image_tokens:]
                    if torch.allclose(image.reshape(-1).sort().values, draw.sort().values, atol=1e-3):
                        fixed = fixed.to(tensor.dtype).unsqueeze(0)
                        return LatentLayout("tokens", patch=patch, fixed=fixed, fixed_first=fixed_first), self._vae_channels
        raise error

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
                if isinstance(error, UnsupportedModelError):
                    raise
                if number == len(candidates) - 1:
                    raise self._failed(first_error or error, error) from None
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

    def _failed(self, first: Exception, last: Exception) -> UnsupportedModelError:
        """One line for a pipeline call that failed with every setting tried: the first error
        (the pipeline's defaults) and, where it differs, the last one."""
        def line(error: Exception) -> str:
            return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"

        also = f" (and with the last settings tried: {line(last)})" if line(last) != line(first) else ""
        return UnsupportedModelError(
            f"{type(self.pipeline).__name__}.__call__ failed before its {self.component} was called: {line(first)}{also}"
        )

    def _candidate_overrides(self) -> Iterator[dict[str, Any]]:
        if self._overrides is not None:
            yield self._overrides
            return
        parameters = inspect.signature(self.pipeline.__call__).parameters
        guidance: list[dict[str, Any]] = [{}]
        if "guidance_scale" in parameters:
            guidance += [{"guidance_scale": 1.0}, {"guidance_scale": 0.0}]
        yield from guidance
        # a pipeline whose per-step inputs must match its number of steps (a guidance schedule of
        # the default length) is run at that number: the recording stops at the first step anyway
        steps = parameters.get("num_inference_steps")
        if steps is not None and steps.default is not inspect.Parameter.empty and steps.default != 1:
            for overrides in guidance:
                yield {**overrides, "num_inference_steps": _PIPELINE_DEFAULT}

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
        through_scheduler = False
        if self.flow and timestep is not None:
            sigma_fraction = timestep / self.num_train_timesteps
            if "sigmas" in parameters:
                kwargs["sigmas"] = [sigma_fraction]
                if "timesteps" in parameters and self._pairs_timesteps is not False:
                    kwargs["timesteps"] = [timestep]
            else:  # the pipeline makes its own schedule: its scheduler is given sigmas=[t/1000] instead
                through_scheduler = True
        kwargs = {name: value for name, value in kwargs.items() if name in parameters}
        if kwargs.get("num_inference_steps") is _PIPELINE_DEFAULT:
            del kwargs["num_inference_steps"]
        for name, parameter in parameters.items():  # what a pipeline with no prompt requires (class labels)
            if name not in kwargs and parameter.default is inspect.Parameter.empty and parameter.kind in (
                parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY
            ):
                kwargs[name] = _required_value(type(self.pipeline).__name__, parameter, prompt, batch)
        sigmas_seen: list[float] = []

        def hook(module: torch.nn.Module, args: tuple[Any, ...], hook_kwargs: dict[str, Any]) -> None:
            bound = self.signature.bind(*args, **hook_kwargs)
            if sigma_fraction is not None:  # read now: the scheduler in use is restored after the call
                sigmas_seen.append(_first_sigma(self.pipeline.scheduler))
            raise _Recorded(dict(bound.arguments))

        handle = self.denoiser.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            with (
                self.context(),
                _flow_scheduler_for_sigmas(self.pipeline, self.flow and ("sigmas" in kwargs or through_scheduler)),
                _scheduler_sigmas(self.pipeline, sigma_fraction if through_scheduler else None),
                torch.no_grad(),
            ):
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
def _scheduler_sigmas(pipeline: Any, fraction: float | None) -> Iterator[None]:
    """For a pipeline whose ``__call__`` takes no ``sigmas`` (it builds its own schedule): its
    scheduler's ``set_timesteps`` set, for the recording only, to ``sigmas=[fraction]``
    whatever steps, timesteps or sigmas the pipeline asks for, keeping the rest (``mu`` of a
    resolution-dependent shift, the device), so that σ is the scheduler's own mapping of t/1000
    as for pipelines that take ``sigmas``. The wrapper keeps the method's signature (diffusers'
    ``retrieve_timesteps`` inspects it)."""
    if fraction is None:
        yield
        return
    scheduler = pipeline.scheduler
    original = scheduler.set_timesteps
    signature = inspect.signature(original)
    if "sigmas" not in signature.parameters:
        raise UnsupportedModelError(
            f"{type(scheduler).__name__}.set_timesteps takes no 'sigmas' and {type(pipeline).__name__}.__call__ "
            "takes none either: autosel cannot set the noise level to a chosen timestep"
        )

    @functools.wraps(original)
    def set_timesteps(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        kept = {name: value for name, value in bound.arguments.items()
                if name not in ("num_inference_steps", "timesteps", "sigmas")}
        return original(sigmas=[fraction], **kept)

    own = vars(scheduler).get("set_timesteps")  # an instance attribute already there, if any
    scheduler.set_timesteps = set_timesteps
    try:
        yield
    finally:
        if own is None:
            del scheduler.set_timesteps  # the class's method again
        else:
            scheduler.set_timesteps = own


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


def vae_latent_geometry(vae: Any, side: int = 256) -> tuple[int, int] | None:
    """Image pixels per latent pixel and latent channels of ``vae``, from an encode of a
    ``side``-pixel image by a copy built from its config on the meta device (shapes only, no
    weights read); ``None`` where that cannot be done (no VAE, not a diffusers model, an
    encoder that reads data)."""
    config = getattr(vae, "config", None)
    if config is None or not hasattr(type(vae), "from_config") or not hasattr(vae, "encode"):
        return None
    try:
        with torch.device("meta"):
            shadow = type(vae).from_config(dict(config)).eval()
    except Exception:  # noqa: BLE001 - not buildable from its config: the pipeline's factor
        return None
    latent_side = 0
    # RGB pixels as autosel encodes them (a VAE that patchifies first counts them ×p² in its
    # config), as an image, then as a one-frame video (video-style VAEs)
    shapes = [(channels, *frames) for channels in dict.fromkeys((3, int(config.get("in_channels", 3) or 3)))
              for frames in ((), (1,))]
    for channels, *frames in shapes:
        try:
            with torch.device("meta"), torch.no_grad():
                encoded = shadow.encode(torch.empty(1, channels, *frames, side, side))
            distribution = getattr(encoded, "latent_dist", None)
            latents = distribution.mean if distribution is not None else getattr(encoded, "latent", encoded)
            latent_side, latent_channels = int(latents.shape[-1]), int(latents.shape[1])
            break
        except Exception:  # noqa: BLE001 - the other input rank, else the pipeline's factor
            continue
    if latent_side <= 0 or side % latent_side:
        return None
    return side // latent_side, latent_channels


def _required_value(pipeline: str, parameter: inspect.Parameter, prompt: str, batch: int) -> Any:
    """A value for a required ``__call__`` parameter that autosel does not otherwise set, by its
    annotation: the prompt for text, 0 (a class label, an index) for integers, one per image
    where the annotation is a list."""
    annotation = parameter.annotation
    text = annotation if isinstance(annotation, str) else str(annotation)
    text = text.replace("typing.", "").lower()
    many = any(word in text for word in ("list", "sequence", "tuple", "tensor"))
    if "str" in text:
        return [prompt] * batch if many else prompt
    if "int" in text:
        return [0] * batch if many else 0
    raise UnsupportedModelError(
        f"{pipeline}.__call__ requires '{parameter.name}' ({text}), which autosel cannot fill: only text, "
        "integer (class label) and list-of-those parameters are filled"
    )


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
    if isinstance(single, list) and isinstance(double, list) and len(single) == 1 and len(double) == 2:
        return {name}  # one item per image
    if isinstance(single, (list, tuple)) and isinstance(double, type(single)) and len(single) == len(double):
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
