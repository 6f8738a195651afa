"""Feature extraction: images in, ``{activation id: B×C×H×W}`` out, as a feature config says.

For each image: VAE latent (float32) → seeded noise at timestep t (the model's own noise
schedule) → one denoiser forward per distinct timestep, with hooks capturing exactly the
requested activations and the forward stopped right after the deepest one. An ensemble
averages several noise draws, batched. The same config and seed give bitwise identical
features on a CPU, whatever the batch composition: each image's noise is seeded from the
config's seed, the ensemble index and the image's own pixels.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from autosel.capture import ActivationCapture
from autosel.catalog import ActivationPoint, measure_catalogue
from autosel.config import ConfigError, FeatureConfig
from autosel.errors import InvalidInputError, unknown_activation
from autosel.images import ImageInput, as_image_list, resize, to_tensor
from autosel.models import Architecture, load_pipeline, resolve_model
from autosel.numerics import l2_normalize

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class FeatureExtractor:
    """Extract the activations named by a :class:`FeatureConfig` from images.

    Args:
        config: the feature config.
        pipeline: an already loaded diffusers pipeline; by default the config's model is
            loaded (weights through the Hugging Face cache, or a local folder). Its VAE is
            moved to float32 (the SDXL VAE overflows in float16).
        device: ``cpu``, ``cuda``, ``cuda:1``…; default: CUDA when available.
        batch_size: denoiser batch (images × ensemble draws) per forward.
        stop_early: end each forward right after the deepest requested activation.

    Raises:
        UnknownActivationError: an id of the config is not in the model's catalogue.
        WeightsUnavailableError: the model's weights cannot be had here.

    Example:
        >>> extractor = FeatureExtractor.from_yaml("results/presets/meng-practical-sd15.yaml")
        >>> features = extractor(["cat.jpg", "dog.jpg"])
        >>> {name: tuple(value.shape) for name, value in features.items()}
        {'up-level1-repeat1-vit-block0-cross-q': (2, 1280, 16, 16), ...}
    """

    def __init__(
        self,
        config: FeatureConfig,
        pipeline: Any | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 8,
        stop_early: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.config = config
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = DTYPES[config.model.dtype]
        self.batch_size = batch_size
        self.stop_early = stop_early
        if pipeline is None:
            spec = resolve_model(config.model.name)
            pipeline = load_pipeline(spec, dtype=self.dtype, device=self.device, revision=config.model.revision)
        self.pipeline = pipeline
        self.unet = _move(pipeline.unet, self.device, self.dtype)
        self.vae = _move(pipeline.vae, self.device, torch.float32)
        self.architecture = Architecture.from_pipeline(pipeline)
        image_size = config.extraction.image_size or self.architecture.native_resolution
        self.image_size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        catalogue = measure_catalogue(self.architecture, self.image_size)
        config.check_ids(point.id for point in catalogue)
        self.catalogue: dict[str, ActivationPoint] = {point.id: point for point in catalogue}
        self.points: dict[str, ActivationPoint] = {name: self.catalogue[name] for name in config.ids}
        self.noise_schedule = _noise_schedule(pipeline.scheduler)
        self.num_train_timesteps = int(pipeline.scheduler.config.num_train_timesteps)
        self._conditioning: dict[str, Any] | None = None
        self.forward_count = 0
        """Denoiser forwards run so far (one per batch and timestep)."""

    @classmethod
    def from_yaml(cls, path: str | Path, **kwargs: Any) -> FeatureExtractor:
        """Build from a feature-config YAML file (see :class:`FeatureConfig`)."""
        return cls(FeatureConfig.from_yaml(path), **kwargs)

    # -- the public calls ------------------------------------------------------------------

    def __call__(self, images: ImageInput | Sequence[ImageInput]) -> dict[str, torch.Tensor]:
        """Extract features of ``images`` (paths, PIL images, 3×H×W or B×3×H×W tensors in [0, 1]).

        Returns:
            ``{activation id: float32 tensor B×C×H×W}`` in the config's order, on ``device``.
        """
        by_timestep: dict[int, list[str]] = {}
        for activation in self.config.activations:
            by_timestep.setdefault(activation.timestep, []).append(activation.id)
        features: dict[str, torch.Tensor] = {}
        for captured in self.extract_timesteps(images, by_timestep).values():
            features.update(captured)
        post = {a.id: a.post for a in self.config.activations}
        return {name: _post_process(features[name], post[name]) for name in self.config.ids}

    def extract_timesteps(
        self, images: ImageInput | Sequence[ImageInput], ids_by_timestep: dict[int, Sequence[str]]
    ) -> dict[int, dict[str, torch.Tensor]]:
        """Raw activations ``{t: {id: B×C×H×W}}`` of any catalogue ids at any timesteps: each
        image is encoded and noised once, then one denoiser forward per timestep (per batch)
        captures all of that timestep's ids. No post-processing."""
        for timestep, names in ids_by_timestep.items():
            self.check_request(timestep, names)
        latents, noise = self.latents_and_noise(images)
        return {t: self.capture_at(latents, noise, t, list(names)) for t, names in sorted(ids_by_timestep.items())}

    def check_request(self, timestep: int, names: Sequence[str]) -> None:
        """Raise unless ``timestep`` is in the scheduler's range and every id is in the catalogue.

        Raises:
            InvalidInputError: the timestep is out of range (the message gives the range).
            UnknownActivationError: an id is unknown (with the closest ids).
        """
        if not 0 <= timestep < self.num_train_timesteps:
            raise InvalidInputError(f"timestep {timestep} is outside the scheduler's range 0…{self.num_train_timesteps - 1}")
        for name in names:
            if name not in self.catalogue:
                raise unknown_activation(name, self.catalogue, self.config.model.name)

    def latents_and_noise(self, images: ImageInput | Sequence[ImageInput]) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean VAE latents (B×C×h×w) and the seeded noise (B×K×C×h×w, K ensemble draws) of
        ``images``: all that :meth:`capture_at` needs, small enough to keep for a whole split."""
        pixels = self.preprocess(images)
        latents = self.encode(pixels)
        return latents, self.noise(pixels, latents.shape[1:])
    def combine(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Resize, normalise, weight and combine the activations into one B×C×H×W map (no PCA)."""
        return combine_features(self.config, features)

    def aggregate(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """:meth:`combine`, then PCA to ``aggregation.pca_dim`` channels fitted on this batch."""
        combined = self.combine(features)
        pca_dim = self.config.aggregation.pca_dim
        return reduce_pca(combined, pca_dim) if pca_dim else combined

    # -- the steps -------------------------------------------------------------------------

    def preprocess(self, images: ImageInput | Sequence[ImageInput]) -> torch.Tensor:
        """B×3×H×W float32 pixels in [0, 1] at the config's image size, on the CPU."""
        batch = [resize(to_tensor(image), self.image_size, self.config.extraction.resize) for image in as_image_list(images)]
        if not batch:
            raise ValueError("no images to extract features from")
        return torch.stack(batch)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """VAE latents (the posterior mean, scaled) of B×3×H×W pixels in [0, 1], float32."""
        latents = []
        config = self.vae.config
        for start in range(0, len(pixels), self.batch_size):
            chunk = pixels[start : start + self.batch_size].to(self.device, torch.float32) * 2 - 1
            mean = self.vae.encode(chunk).latent_dist.mean
            shift = getattr(config, "shift_factor", None) or 0.0
            latents.append((mean - shift) * config.scaling_factor)
        return torch.cat(latents)

    def noise(self, pixels: torch.Tensor, latent_shape: Sequence[int]) -> torch.Tensor:
        """Seeded noise, B×K×C×h×w (K ensemble draws), drawn on the CPU for reproducibility."""
        seed = self.config.extraction.noise_seed
        draws = []
        for image in pixels:
            digest = hashlib.sha256(image.numpy().tobytes()).digest()
            per_image = []
            for member in range(self.config.extraction.ensemble):
                key = hashlib.sha256(digest + f"{seed}:{member}".encode()).digest()
                generator = torch.Generator().manual_seed(int.from_bytes(key[:8], "little") & (2**63 - 1))
                per_image.append(torch.randn(*latent_shape, generator=generator))
            draws.append(torch.stack(per_image))
        return torch.stack(draws)

    @torch.no_grad()
    def conditioning(self, batch_size: int) -> dict[str, Any]:
        """The denoiser's conditioning for ``batch_size`` rows (prompt encoded once, then reused)."""
        if self._conditioning is None:
            self._conditioning = self._encode_prompt()
        return {
            key: (value.expand(batch_size, *value.shape[1:]) if isinstance(value, torch.Tensor) else
                  {k: v.expand(batch_size, *v.shape[1:]) for k, v in value.items()})
            for key, value in self._conditioning.items()
        }

    # -- internals -------------------------------------------------------------------------

    def capture_at(
        self, latents: torch.Tensor, noise: torch.Tensor, timestep: int, names: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """``{id: B×C×H×W}`` (float32, ensemble-averaged) of catalogue ids ``names`` from
        latents and noise of :meth:`latents_and_noise`, noised to ``timestep``: one denoiser
        forward per batch, stopped after the deepest id when ``stop_early``."""
        self.check_request(timestep, names)
        for name in names:
            self.points.setdefault(name, self.catalogue[name])
        with self._eval_mode():
            return self._capture(latents, noise, timestep, list(names))

    def _capture(
        self, latents: torch.Tensor, noise: torch.Tensor, timestep: int, names: list[str]
    ) -> dict[str, torch.Tensor]:
        images, members = noise.shape[:2]
        rows = latents.unsqueeze(1).expand(-1, members, *latents.shape[1:]).reshape(images * members, *latents.shape[1:])
        flat_noise = noise.reshape(images * members, *noise.shape[2:]).to(self.device)
        taps = {name: self.points[name].tap for name in names}
        sums: dict[str, list[torch.Tensor]] = {name: [] for name in names}
        with torch.no_grad(), ActivationCapture(self.unet, taps, stop_early=self.stop_early) as capture:
            for start in range(0, len(rows), self.batch_size):
                stop = min(start + self.batch_size, len(rows))
                steps = torch.full((stop - start,), timestep, dtype=torch.long, device=self.device)
                noisy = self.noise_schedule(rows[start:stop], flat_noise[start:stop], steps)
                captured = capture.run(noisy.to(self.dtype), steps, **self.conditioning(stop - start))
                self.forward_count += 1
                for name in names:
                    sums[name].append(captured[name].float())
        return {name: _member_mean(chunks, images, members) for name, chunks in sums.items()}

    def _encode_prompt(self) -> dict[str, Any]:
        pipeline, prompt = self.pipeline, self.config.extraction.prompt
        if self.architecture.family == "sdxl":
            embeds, _, pooled, _ = pipeline.encode_prompt(
                prompt=prompt, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=False
            )
            height, width = self.image_size
            time_ids = torch.tensor([[height, width, 0, 0, height, width]], device=self.device, dtype=self.dtype)
            return {
                "encoder_hidden_states": embeds.to(self.dtype),
                "added_cond_kwargs": {"text_embeds": pooled.to(self.dtype), "time_ids": time_ids},
            }
        embeds = pipeline.encode_prompt(prompt, self.device, 1, False)[0]
        return {"encoder_hidden_states": embeds.to(self.dtype)}

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        was_training = self.unet.training
        if not was_training:  # the usual case: skip two walks over every module
            yield
            return
        self.unet.eval()
        try:
            yield
        finally:
            self.unet.train(was_training)


def combine_features(config: FeatureConfig, features: dict[str, torch.Tensor]) -> torch.Tensor:
    """The config's aggregation of ``{id: B×C×H×W}``: each activation resized to the target
    resolution (default: the largest activation's), optionally L2-normalised over channels,
    weighted, then concatenated or summed (no PCA: see :func:`reduce_pca`)."""
    aggregation = config.aggregation
    if aggregation.resolution is not None:
        size = aggregation.resolution
        target = (size, size) if isinstance(size, int) else tuple(size)
    else:
        target = max((tuple(value.shape[-2:]) for value in features.values()), key=lambda hw: hw[0] * hw[1])
    maps = []
    for activation in config.activations:
        value = features[activation.id].float()
        if tuple(value.shape[-2:]) != target:
            value = F.interpolate(value, size=target, mode="bilinear", align_corners=False)
        if aggregation.l2_normalize:
            value = l2_normalize(value, dim=1)
        maps.append(value * activation.weight)
    if aggregation.combine == "concat":
        return torch.cat(maps, dim=1)
    channels = {m.shape[1] for m in maps}
    if len(channels) > 1:
        raise ConfigError(
            f"aggregation.combine: weighted-sum needs equal channel counts, got {sorted(channels)}; "
            "use concat"
        )
    return torch.stack(maps).sum(dim=0) / sum(a.weight for a in config.activations)


def _noise_schedule(scheduler: Any) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """``add_noise(latents, noise, t)`` of the forward diffusion the model was trained with.

    A DDPM scheduler rebuilt from the pipeline scheduler's config gives the training noise
    schedule (betas) whatever sampler the pipeline ships (DDIM, PNDM, Euler…).
    """
    from diffusers import DDPMScheduler

    ddpm = DDPMScheduler.from_config(scheduler.config)
    return ddpm.add_noise


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


def _post_process(value: torch.Tensor, post: str) -> torch.Tensor:
    if post == "l2":
        return l2_normalize(value, dim=1)
    return value


def reduce_pca(maps: torch.Tensor, dim: int) -> torch.Tensor:
    """Project B×C×H×W maps on their top ``dim`` principal components (exact, deterministic).

    The components are fitted on all pixels of ``maps``; each component's sign is fixed so
    that its largest coefficient is positive.
    """
    batch, channels, height, width = maps.shape
    if dim > channels:
        raise ConfigError(f"aggregation.pca_dim: {dim} is more than the {channels} channels to reduce")
    pixels = maps.permute(0, 2, 3, 1).reshape(-1, channels).double()
    centred = pixels - pixels.mean(dim=0)
    _, vectors = torch.linalg.eigh(centred.T @ centred)
    components = vectors[:, -dim:].flip(-1)
    signs = torch.sign(components.gather(0, components.abs().argmax(dim=0, keepdim=True)))
    projected = centred @ (components * signs)
    return projected.float().reshape(batch, height, width, dim).permute(0, 3, 1, 2)
