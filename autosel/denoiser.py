"""The denoiser engine under extraction, sweep and search: one model, any family.

:class:`Denoiser` loads a pipeline (registry name, hub id or folder) and knows, through its
family (:mod:`autosel.models.families`), how to encode images (VAE latents, or pixels
in pixel space), how a prompt becomes conditioning (computed once per prompt and size, then
the text encoders leave the GPU), how to noise a latent with the family's own training process
(DDPM betas or rectified flow), and how to run one forward that captures any catalogue ids
and stops after the deepest one. :class:`DenoiserRun` fixes the extraction settings (size,
resize, prompt, seed, ensemble) and the batch: it is what the sweep and the search workers
use, and what :class:`autosel.extract.FeatureExtractor` adds a config's aggregation to.

Example:
    >>> denoiser = Denoiser.load("tiny-flux-random")
    >>> run = DenoiserRun(denoiser, ExtractionSection(image_size=64))
    >>> latents, noise = run.latents_and_noise(torch.rand(2, 3, 64, 64))
    >>> {k: tuple(v.shape) for k, v in run.capture_at(latents, noise, 260, ["vit-block1-out"]).items()}
    {'vit-block1-out': (2, 32, 8, 8)}
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch

from autosel.capture import ActivationCapture
from autosel.catalog import ActivationPoint, measure_catalogue
from autosel.config import ExtractionSection, FeatureConfig
from autosel.errors import InvalidInputError, unknown_activation
from autosel.images import ImageInput, as_image_list, resize, to_tensor
from autosel.limits import check_image_memory
from autosel.models import Architecture, load_pipeline, resolve_model
from autosel.models.architecture import ImageSize, load_architecture
from autosel.models.families import expand_rows
from autosel.noise import nearest_timestep
from autosel.prompts import image_prompts
from autosel.schema import Level, Sigma, check_sigma, check_timestep, level_key

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def default_device() -> torch.device:
    """CUDA when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_device(device: str | torch.device | None) -> torch.device:
    """``device`` parsed and checked against this machine (``None``: :func:`default_device`).

    Raises:
        InvalidInputError: not a device name torch knows, or one this machine does not have
            (``cuda`` with a CPU-only torch or no GPU, ``cuda:3`` on a two-GPU box, ``mps`` off a Mac).
    """
    if device is None:
        return default_device()
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise InvalidInputError(f"--device '{device}' is not a device: use cpu, cuda or cuda:N") from None
    if parsed.type == "cpu":
        return parsed
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            built = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise InvalidInputError(f"--device '{device}': {built}; use --device cpu")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise InvalidInputError(f"--device '{device}': this machine has {count} CUDA device(s), cuda:0…cuda:{count - 1}")
        return parsed
    if parsed.type == "mps" and torch.backends.mps.is_available():
        return parsed
    raise InvalidInputError(f"--device '{device}' is not available here: use cpu" + (" or cuda" if torch.cuda.is_available() else ""))


def resolve_dtype(dtype: str | None, device: str | torch.device | None = None) -> str:
    """``dtype`` if given; else the default for ``device``: bfloat16 on CUDA where supported,
    float16 on older CUDA devices, float32 on a CPU (half precision is slow and partial there)."""
    if dtype is not None:
        if dtype not in DTYPES:
            raise InvalidInputError(f"dtype '{dtype}' is not one of {', '.join(DTYPES)}")
        return dtype
    if check_device(device).type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


class Denoiser:
    """A loaded diffusion model's denoiser, VAE and conditioning, through its family.

    Args:
        pipeline: a loaded diffusers pipeline of a supported family.
        device: ``cpu``, ``cuda``, ``cuda:1``…; default: CUDA when available.
        dtype: the denoiser's dtype (the VAE always runs in float32: SDXL's overflows in float16).
        name, revision: the model reference it was loaded from (for messages and records).
        architecture: the model's architecture (default: read from the pipeline's components).
    """

    def __init__(
        self,
        pipeline: Any,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        name: str = "MODEL",
        revision: str | None = None,
        architecture: Architecture | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.device = check_device(device)
        self.dtype = dtype
        self.name = name
        self.revision = revision
        self.architecture = architecture or Architecture.from_pipeline(pipeline)
        self.family = self.architecture  # the model's family, bound to its config
        self.module = _move(getattr(pipeline, self.family.component), self.device, dtype)
        self.vae = None if self.family.pixel_space else _move(pipeline.vae, self.device, torch.float32)
        self.noise_process = self.family.make_noise(pipeline)
        self.family.attach(pipeline, self._text_encoders_on_device)
        self.num_train_timesteps = int(pipeline.scheduler.config.get("num_train_timesteps", 1000))
        self._conditioning: dict[tuple[str, tuple[int, int]], dict[str, Any]] = {}
        self.forward_count = 0
        """Denoiser forwards run so far (one per batch and timestep)."""

    @classmethod
    def load(
        cls,
        model: str,
        dtype: str | torch.dtype = torch.float32,
        device: str | torch.device | None = None,
        revision: str | None = None,
    ) -> Denoiser:
        """Load ``model`` (registry name, hub id or local folder) with weights in ``dtype``.

        Raises:
            UnknownModelError, NotAPipelineError, WeightsUnavailableError, UnsupportedModelError.
        """
        dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
        device = check_device(device)
        spec = resolve_model(model)
        # loaded on the CPU: only the denoiser and the VAE move to the device (text encoders visit it once)
        pipeline = load_pipeline(spec, dtype=dtype, device="cpu", revision=revision)
        architecture = Architecture.from_pipeline(pipeline)
        if spec.source == "builtin":  # built-in twins declare their native size
            architecture = replace(architecture, native_size=load_architecture(spec).native_size)
        return cls(pipeline, device=device, dtype=dtype, name=model, revision=revision, architecture=architecture)

    # -- what it has ---------------------------------------------------------------------

    def catalogue(self, image_size: ImageSize | None = None) -> list[ActivationPoint]:
        """Every activation point at ``image_size`` (default: native), in forward order."""
        return measure_catalogue(self.architecture, image_size)

    def check_timestep(self, timestep: Level) -> None:
        """Raise :class:`InvalidInputError` unless ``timestep`` is on the 0…N−1 training scale
        (a :class:`~autosel.schema.Sigma`: in 0–1)."""
        if isinstance(timestep, Sigma):
            check_sigma(timestep)
        else:
            check_timestep(timestep, self.num_train_timesteps)

    def noise_level(self, level: Level, image_hw: tuple[int, int], prompt: str = "") -> tuple[float, float]:
        """(t on the 0…999 scale, σ) that ``level`` means for an image of ``image_hw`` pixels:
        a timestep's σ after the scheduler's shift, a σ's unshifted t (see :mod:`autosel.noise`)."""
        self.check_timestep(level)
        latent_hw = (image_hw[0] // self.architecture.vae_scale_factor, image_hw[1] // self.architecture.vae_scale_factor)
        grid = self.family.token_grid(latent_hw)
        tokens = grid[0] * grid[1] if grid else latent_hw[0] * latent_hw[1]
        return self.noise_process.level(level, tokens, image_hw=tuple(image_hw), prompt=prompt)

    def timestep_for_sigma(self, sigma: float, image_hw: tuple[int, int], prompt: str = "") -> int:
        """The training timestep whose σ at ``image_hw`` is nearest ``sigma`` (ties: the lower t),
        found by bisection (σ grows with t in every schedule)."""
        return nearest_timestep(lambda t: self.noise_level(t, image_hw, prompt)[1], sigma, self.num_train_timesteps)

    # -- the steps -----------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
        """Clean latents (the VAE posterior mean, shifted and scaled as the family trains) of
        B×3×H×W pixels in [0, 1], float32; in pixel space the pixels mapped to [−1, 1]."""
        return self.encode_posterior(pixels, batch_size)[0]

    @torch.no_grad()
    def encode_posterior(self, pixels: torch.Tensor, batch_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the VAE posterior of B×3×H×W pixels in [0, 1], both B×C×h×w and in
        the denoiser's latent scale (a sample is ``mean + std · ε``); a deterministic encoder
        or pixel space has std 0."""
        if self.vae is None:
            clean = pixels.to(self.device, torch.float32) * 2 - 1
            return clean, torch.zeros_like(clean)
        means, stds = [], []
        for start in range(0, len(pixels), batch_size):
            chunk = pixels[start : start + batch_size].to(self.device, torch.float32) * 2 - 1
            mean, std = vae_posterior(self.vae, chunk)
            means.append(mean)
            stds.append(std)
        return torch.cat(means), torch.cat(stds)

    @torch.no_grad()
    def condition(self, prompt: str, image_hw: tuple[int, int]) -> dict[str, Any]:
        """The conditioning of ``prompt`` for one row, computed once per prompt and image size.

        The text encoders visit the device for this one encoding and go back to where they
        were (the CPU, as :meth:`load` leaves them): T5-XXL alone holds 4.7 B parameters, so
        the denoiser then has the device's memory to itself.
        """
        key = (prompt, tuple(image_hw))
        if key not in self._conditioning:
            with self._text_encoders_on_device():
                self._conditioning[key] = self.family.encode_prompt(
                    self.pipeline, prompt, self.device, self.dtype, tuple(image_hw)
                )
        return self._conditioning[key]

    @contextlib.contextmanager
    def _text_encoders_on_device(self) -> Iterator[None]:
        encoders = [
            component for name, component in self.pipeline.components.items()
            if name.startswith("text_encoder") and isinstance(component, torch.nn.Module)
        ]
        homes = [next(encoder.parameters()).device for encoder in encoders]
        moved = [(encoder, home) for encoder, home in zip(encoders, homes) if home != self.device]
        for encoder, _ in moved:
            encoder.to(self.device)
        try:
            yield
        finally:
            for encoder, home in moved:
                encoder.to(home)
            if moved and self.device.type == "cuda":
                torch.cuda.empty_cache()

    def noised(
        self,
        latents: torch.Tensor,
        noise: torch.Tensor,
        timestep: Level,
        image_hw: tuple[int, int] | None = None,
        prompt: str = "",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(noisy latents, the denoiser's timestep input) at ``timestep`` (0–999 scale, or a σ)."""
        latent_hw = tuple(latents.shape[-2:])
        grid = self.family.token_grid(latent_hw)
        tokens = grid[0] * grid[1] if grid else latents.shape[-2] * latents.shape[-1]
        image_hw = image_hw or tuple(side * self.architecture.vae_scale_factor for side in latent_hw)
        return self.noise_process(latents, noise, timestep, tokens, image_hw=image_hw, prompt=prompt)

    def capture(
        self,
        latents: torch.Tensor,
        noise: torch.Tensor,
        timestep: Level,
        points: Mapping[str, ActivationPoint],
        prompt: str = "",
        image_hw: tuple[int, int] | None = None,
        batch_size: int = 8,
        stop_early: bool = True,
    ) -> dict[str, torch.Tensor]:
        """``{id: B×C×H×W}`` (float32, averaged over the K noise draws) of ``points`` from
        latents (B×C×h×w, or B×K×C×h×w: one per draw) and noise (B×K×C×h×w) noised to ``timestep``: one forward per batch
        of ``batch_size`` rows, stopped after the deepest point when ``stop_early``."""
        self.check_timestep(timestep)
        images, members = noise.shape[:2]
        latent_hw = tuple(latents.shape[-2:])
        image_hw = image_hw or tuple(side * self.architecture.vae_scale_factor for side in latent_hw)
        if latents.ndim == noise.ndim:  # one latent per ensemble member (VAE posterior samples)
            rows = latents.reshape(images * members, *latents.shape[2:])
        else:
            rows = latents.unsqueeze(1).expand(-1, members, *latents.shape[1:]).reshape(images * members, *latents.shape[1:])
        flat_noise = noise.reshape(images * members, *noise.shape[2:]).to(self.device)
        conditioning = self.condition(prompt, image_hw)
        taps = {name: point.tap for name, point in points.items()}
        chunks: dict[str, list[torch.Tensor]] = {name: [] for name in points}
        with torch.no_grad(), self._eval_mode():
            for start in range(0, len(rows), batch_size):
                stop = min(start + batch_size, len(rows))
                noisy, model_timestep = self.noised(
                    rows[start:stop].to(self.device), flat_noise[start:stop], timestep, image_hw, prompt
                )
                inputs = self.family.live_inputs(self.pipeline, noisy.to(self.dtype), timestep, conditioning)
                args, kwargs = inputs or self.family.inputs(
                    noisy.to(self.dtype), model_timestep, expand_rows(conditioning, stop - start)
                )
                # hooked after the inputs are made: the generic path makes them by calling the
                # pipeline, whose denoiser call must not reach the hooks (dit-in's is on the root)
                with ActivationCapture(self.module, taps, stop_early=stop_early) as capture:
                    capture.token_grid = self.family.token_grid(latent_hw)
                    captured = capture.run(*args, **kwargs)
                self.forward_count += 1
                for name in points:
                    chunks[name].append(captured[name].float())
        return {name: _member_mean(parts, images, members) for name, parts in chunks.items()}

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        was_training = self.module.training
        if not was_training:  # the usual case: skip two walks over every module
            yield
            return
        self.module.eval()
        try:
            yield
        finally:
            self.module.train(was_training)


class DenoiserRun:
    """A :class:`Denoiser` with fixed extraction settings and batch size.

    Args:
        denoiser: the loaded model.
        extraction: image size and resize policy, prompt, noise seed, ensemble size.
        batch_size: denoiser batch (images × ensemble draws) per forward.
        stop_early: end each forward right after the deepest requested activation.
    """

    def __init__(
        self, denoiser: Denoiser, extraction: ExtractionSection | None = None, batch_size: int = 8, stop_early: bool = True
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.denoiser = denoiser
        self.extraction = extraction or ExtractionSection()
        self.batch_size = batch_size
        self.stop_early = stop_early
        size = self.extraction.image_size or denoiser.architecture.native_resolution
        check_image_memory(size, str(denoiser.device))  # before any tensor of that size exists
        self.image_size: tuple[int, int] = (size, size) if isinstance(size, int) else tuple(size)
        self.catalogue: dict[str, ActivationPoint] = {p.id: p for p in denoiser.catalogue(self.image_size)}

    @property
    def forward_count(self) -> int:
        """Denoiser forwards run so far by the underlying :class:`Denoiser`."""
        return self.denoiser.forward_count

    @property
    def pipeline(self) -> Any:
        return self.denoiser.pipeline

    @property
    def device(self) -> torch.device:
        return self.denoiser.device

    @property
    def architecture(self) -> Architecture:
        return self.denoiser.architecture

    def check_request(self, timestep: Level, names: Sequence[str]) -> None:
        """Raise unless ``timestep`` is in the scheduler's range and every id is in the catalogue.

        Raises:
            InvalidInputError: the timestep is out of range (the message gives the range).
            UnknownActivationError: an id is unknown (with the closest ids).
        """
        self.denoiser.check_timestep(timestep)
        for name in names:
            if name not in self.catalogue:
                raise unknown_activation(name, self.catalogue, self.denoiser.name)

    def preprocess(self, images: ImageInput | Sequence[ImageInput]) -> torch.Tensor:
        """B×3×H×W float32 pixels in [0, 1] at the run's image size, on the CPU."""
        extraction = self.extraction
        batch = [
            resize(to_tensor(image), self.image_size, extraction.resize, extraction.resize_filter)
            for image in as_image_list(images)
        ]
        if not batch:
            raise ValueError("no images to extract features from")
        return torch.stack(batch)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Clean latents of B×3×H×W pixels (see :meth:`Denoiser.encode`)."""
        return self.denoiser.encode(pixels, self.batch_size)

    def noise(self, pixels: torch.Tensor, latent_shape: Sequence[int], stream: str = "") -> torch.Tensor:
        """Seeded noise, B×K×C×h×w (K ensemble draws), drawn on the CPU for reproducibility.

        Each image's noise is seeded from the run's seed, the draw index and the image's own
        pixels, so an image's features do not depend on the rest of its batch. ``stream``
        names an independent draw from the same seed (``"vae"``: the posterior samples).
        """
        seed = self.extraction.noise_seed
        tag = f":{stream}" if stream else ""
        draws = []
        for image in pixels:
            digest = hashlib.sha256(image.numpy().tobytes()).digest()
            per_image = []
            for member in range(self.extraction.ensemble):
                key = hashlib.sha256(digest + f"{seed}:{member}{tag}".encode()).digest()
                generator = torch.Generator().manual_seed(int.from_bytes(key[:8], "little") & (2**63 - 1))
                per_image.append(torch.randn(*latent_shape, generator=generator))
            draws.append(torch.stack(per_image))
        return torch.stack(draws)

    def latents_and_noise(self, images: ImageInput | Sequence[ImageInput]) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean latents and the seeded noise (B×K×C×h×w) of ``images``: all that
        :meth:`capture_at` needs, small enough to keep for a whole split. The latents are the
        VAE posterior mean (B×C×h×w), or with ``extraction.vae_posterior: sample`` one seeded
        posterior sample per image and ensemble member (B×K×C×h×w)."""
        pixels = self.preprocess(images)
        if self.extraction.vae_posterior == "mean":
            latents = self.encode(pixels)
            return latents, self.noise(pixels, latents.shape[1:])
        mean, std = self.denoiser.encode_posterior(pixels, self.batch_size)
        draws = self.noise(pixels, mean.shape[1:], stream="vae").to(mean.device)
        return mean.unsqueeze(1) + std.unsqueeze(1) * draws, self.noise(pixels, mean.shape[1:])

    def capture_at(
        self,
        latents: torch.Tensor,
        noise: torch.Tensor,
        timestep: Level,
        names: Sequence[str],
        categories: Sequence[str | None] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``{id: B×C×H×W}`` (float32, ensemble-averaged) of catalogue ids ``names`` at ``timestep`` (or a σ).

        ``categories`` (one per image) fill a ``{category}`` prompt; images of one prompt share
        their forwards, and each image's features are those of its own prompt.

        Raises:
            InvalidInputError: a ``{category}`` prompt and an image without a category.
        """
        self.check_request(timestep, names)
        points = {name: self.catalogue[name] for name in names}
        prompts = image_prompts(self.extraction.prompt, len(latents), categories)
        groups: dict[str, list[int]] = {}
        for index, prompt in enumerate(prompts):
            groups.setdefault(prompt, []).append(index)
        parts = {
            prompt: self.denoiser.capture(
                latents[rows] if len(groups) > 1 else latents, noise[rows] if len(groups) > 1 else noise, timestep,
                points, prompt, self.image_size, self.batch_size, self.stop_early,
            )
            for prompt, rows in groups.items()
        }
        if len(parts) == 1:
            return next(iter(parts.values()))
        order = torch.tensor([index for rows in groups.values() for index in rows])
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order))
        return {name: torch.cat([part[name] for part in parts.values()])[inverse] for name in names}

    def noise_level(self, level: Level) -> tuple[float, float]:
        """(t, σ) that ``level`` means at the run's image size (see :meth:`Denoiser.noise_level`)."""
        return self.denoiser.noise_level(level, self.image_size, self.extraction.prompt)

    def timestep_for_sigma(self, sigma: float) -> int:
        """The training timestep whose σ at the run's image size is nearest ``sigma`` (see
        :meth:`Denoiser.timestep_for_sigma`)."""
        return self.denoiser.timestep_for_sigma(sigma, self.image_size, self.extraction.prompt)

    def recorded(self, config: FeatureConfig) -> FeatureConfig:
        """``config`` with each activation's ``noise_level`` (t and σ at the run's image size) filled in:
        what every config autosel writes records."""
        return config.with_noise_levels({level: self.noise_level(level) for level in config.timesteps})

    def extract_timesteps(
        self,
        images: ImageInput | Sequence[ImageInput],
        ids_by_timestep: Mapping[Level, Sequence[str]],
        categories: Sequence[str | None] | None = None,
    ) -> dict[Level, dict[str, torch.Tensor]]:
        """Raw activations ``{t: {id: B×C×H×W}}`` of any catalogue ids at any timesteps: each
        image is encoded and noised once, then one denoiser forward per timestep (per batch)
        captures all of that timestep's ids. No post-processing. ``categories``: one per image,
        for a ``{category}`` prompt (see :meth:`capture_at`)."""
        for timestep, names in ids_by_timestep.items():
            self.check_request(timestep, names)
        image_list = as_image_list(images)
        image_prompts(self.extraction.prompt, len(image_list), categories)  # a missing category fails before any forward
        latents, noise = self.latents_and_noise(image_list)
        ordered = sorted(ids_by_timestep.items(), key=lambda item: level_key(item[0]))
        return {t: self.capture_at(latents, noise, t, list(names), categories) for t, names in ordered}


def vae_latents(vae: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Clean latents of B×3×H×W pixels in [−1, 1]: the posterior mean of :func:`vae_posterior`."""
    return vae_posterior(vae, pixels)[0]


def vae_posterior(vae: torch.nn.Module, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) of the VAE posterior of B×3×H×W pixels in [−1, 1], normalised as the
    pipelines normalise latents before denoising (the inverse of their decode): per-channel
    ``latents_mean``/``latents_std`` where the config has them, then ``(z − shift_factor) ·
    scaling_factor`` (the std scaled alike, so ``mean + std · ε`` is a normalised sample). A
    deterministic encoder's latent has std 0. Video-style VAEs (3-D convolutions, as
    Qwen-Image's) get a one-frame axis in and out."""
    config = vae.config
    frames = any(isinstance(module, torch.nn.Conv3d) for module in vae.modules())
    encoded = vae.encode(pixels.unsqueeze(2) if frames else pixels)
    distribution = getattr(encoded, "latent_dist", None)
    latents = distribution.mean if distribution is not None else encoded.latent
    spread = distribution.std if distribution is not None else torch.zeros_like(latents)
    if frames:
        latents, spread = latents[:, :, 0], spread[:, :, 0]
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    if mean is not None and std is not None:
        shape = (1, -1, 1, 1)
        channel_std = torch.tensor(std, device=latents.device).view(shape)
        latents = (latents - torch.tensor(mean, device=latents.device).view(shape)) / channel_std
        spread = spread / channel_std
    shift = getattr(config, "shift_factor", None) or 0.0
    scale = getattr(config, "scaling_factor", None) or 1.0
    return (latents - shift) * scale, spread * scale


def _member_mean(chunks: list[torch.Tensor], images: int, members: int) -> torch.Tensor:
    """The mean over ensemble members of forward chunks holding images × members rows."""
    rows = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
    rows = rows.reshape(images, members, *rows.shape[1:])
    return rows[:, 0] if members == 1 else rows.mean(dim=1)  # a one-member mean would only copy


def _move(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """``module.to(device, dtype)``, casting only when needed (diffusers warns on every cast)."""
    current = next(module.parameters())
    if current.dtype != dtype:
        module = module.to(dtype=dtype)
    return module.to(device) if current.device != device else module
