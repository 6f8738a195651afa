"""Forward noise processes: how a clean latent becomes the denoiser's input at timestep t.

Timesteps are always on the 0–999 training scale of a feature config. DDPM families (the
UNets, PixArt, Hunyuan-DiT) add noise with their training betas; EDM-trained models
(Playground v2.5) with their scheduler's σ ramp (:class:`EDMNoise`); rectified-flow families (SD3,
FLUX) mix x_t = (1 − σ)·x_0 + σ·ε with σ = shift(t / 1000) as their scheduler maps it: a fixed
shift (SD3: 3.0), or FLUX's resolution-dependent one (μ from the image's token count). So a
config's t = 260 on FLUX at 640 px is σ 0.42, not DiTF's σ = t/1000 = 0.26: a config that
wants DiTF's noise level gives ``sigma: 0.26`` (a :class:`~autosel.schema.Sigma`), used as is.

σ means one thing everywhere: the noise fraction of the denoiser's input. For rectified flow
it is the mixing weight above; for DDPM families it is √(1 − ᾱ_t), the noise's coefficient in
x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε, and a σ given to a DDPM family picks the training timestep whose
√(1 − ᾱ_t) is nearest (ties: the lower t). :meth:`NoiseProcess.level` gives both t and σ.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch

from autosel.schema import Level, Sigma


class NoiseProcess:
    """Callable ``(latents, noise, timestep, tokens) -> (noisy latents, denoiser timestep input)``;
    ``image_hw`` and ``prompt`` name the call for processes read off the pipeline's own call."""

    def __call__(
        self,
        latents: torch.Tensor,
        noise: torch.Tensor,
        timestep: int,
        tokens: int,
        image_hw: tuple[int, int] | None = None,
        prompt: str = "",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def level(self, level: Level, tokens: int, image_hw: tuple[int, int] | None = None, prompt: str = "") -> tuple[float, float]:
        """(t on the 0…999 scale, σ) that ``level`` (a timestep or a :class:`Sigma`) means here."""
        raise NotImplementedError


class DDPMNoise(NoiseProcess):
    """q(x_t | x_0) with the model's training betas. A DDPM scheduler rebuilt from the pipeline
    scheduler's config gives the training schedule whatever sampler the pipeline ships."""

    def __init__(self, scheduler_config: Any) -> None:
        from diffusers import DDPMScheduler

        self.scheduler = DDPMScheduler.from_config(scheduler_config)

    @property
    def sigmas(self) -> torch.Tensor:
        """√(1 − ᾱ_t) for every training timestep t (float64)."""
        return (1.0 - self.scheduler.alphas_cumprod.double()).sqrt()

    def timestep_of(self, level: Level) -> int:
        """The training timestep of ``level``: itself, or the one whose σ is nearest (ties: lower t)."""
        if not isinstance(level, Sigma):
            return int(level)
        return int(torch.argmin((self.sigmas - float(level)).abs()))

    def level(self, level, tokens, image_hw=None, prompt=""):
        timestep = self.timestep_of(level)
        return float(timestep), float(self.sigmas[timestep])

    def __call__(self, latents, noise, timestep, tokens, image_hw=None, prompt=""):
        steps = torch.full((len(latents),), self.timestep_of(timestep), dtype=torch.long, device=latents.device)
        return self.scheduler.add_noise(latents, noise, steps), steps


class FlowNoise(NoiseProcess):
    """Rectified flow: x_t = (1 − σ)·x_0 + σ·ε, σ the scheduler's shifted t/1000.

    Args:
        scheduler_config: a ``FlowMatchEulerDiscreteScheduler`` config (shift, dynamic shifting).
        timestep_scale: what the denoiser takes as its timestep: σ × this (SD3: 1000, FLUX: 1).
    """

    def __init__(self, scheduler_config: Any, timestep_scale: float) -> None:
        self.config = dict(scheduler_config)
        self.timestep_scale = timestep_scale
        self.num_train_timesteps = int(self.config.get("num_train_timesteps", 1000))

    def sigma(self, timestep: Level, tokens: int) -> float:
        """σ at ``timestep`` for an image of ``tokens`` image tokens (a :class:`Sigma` as is)."""
        if isinstance(timestep, Sigma):
            return float(timestep)
        fraction = timestep / self.num_train_timesteps
        if fraction <= 0:
            return 0.0
        mu = self._mu(tokens)
        if mu is None:
            shift = float(self.config.get("shift", 1.0))
            return shift * fraction / (1 + (shift - 1) * fraction)
        if self.config.get("time_shift_type", "exponential") == "linear":
            return mu / (mu + (1 / fraction - 1))
        return math.exp(mu) / (math.exp(mu) + (1 / fraction - 1))

    def fraction(self, sigma: float, tokens: int) -> float:
        """The unshifted t/1000 that the scheduler's shift maps to ``sigma`` (the inverse of :meth:`sigma`)."""
        if sigma <= 0:
            return 0.0
        mu = self._mu(tokens)
        if mu is None:
            stretch = float(self.config.get("shift", 1.0))
        else:
            stretch = mu if self.config.get("time_shift_type", "exponential") == "linear" else math.exp(mu)
        # every shift is σ = s·f / (1 + (s − 1)·f) for some s (static: shift; dynamic: e^μ or μ)
        return sigma / (stretch - (stretch - 1) * sigma)

    def _mu(self, tokens: int) -> float | None:
        """μ of a resolution-dependent shift for ``tokens`` image tokens; ``None`` for a static shift."""
        if not self.config.get("use_dynamic_shifting"):
            return None
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        return calculate_shift(
            tokens,
            self.config.get("base_image_seq_len", 256),
            self.config.get("max_image_seq_len", 4096),
            self.config.get("base_shift", 0.5),
            self.config.get("max_shift", 1.15),
        )

    def level(self, level, tokens, image_hw=None, prompt=""):
        sigma = self.sigma(level, tokens)
        if isinstance(level, Sigma):
            return self.num_train_timesteps * self.fraction(sigma, tokens), sigma
        return float(level), sigma

    def __call__(self, latents, noise, timestep, tokens, image_hw=None, prompt=""):
        sigma = self.sigma(timestep, tokens)
        noisy = (1.0 - sigma) * latents + sigma * noise
        model_timestep = torch.full((len(latents),), sigma * self.timestep_scale, device=latents.device)
        return noisy, model_timestep


class EDMNoise(NoiseProcess):
    """EDM (Karras et al. 2022), as Playground v2.5 is trained: x_t = x_0 + σ·ε, given to the
    denoiser preconditioned as the EDM schedulers do, c_in·x_t with c_in = 1/√(σ² + σ_data²),
    with the timestep input c_noise = ¼·ln σ.

    t counts the scheduler's own training schedule (its N = 1000-step ramp from σ_max down to
    σ_min) from the clean end: σ(t) = sigmas[N − 1 − t], so t = 999 is σ_max, and t is where
    an img2img pipeline of N steps at strength (t + 1)/N starts.

    Args:
        scheduler: the pipeline's EDM scheduler (``EDMDPMSolverMultistepScheduler``,
            ``EDMEulerScheduler``); a fresh one of its config gives the training schedule.
    """

    def __init__(self, scheduler: Any) -> None:
        fresh = type(scheduler).from_config(scheduler.config)
        self.sigmas = fresh.sigmas[:-1]  # the last is the appended final 0
        self.sigma_data = float(fresh.config.sigma_data)

    def sigma(self, timestep: int) -> float:
        """σ at ``timestep``."""
        return float(self.sigmas[len(self.sigmas) - 1 - timestep])

    def __call__(self, latents, noise, timestep, tokens, image_hw=None, prompt=""):
        sigma = self.sigmas[len(self.sigmas) - 1 - timestep].to(latents.device)
        noisy = latents + noise * sigma
        c_in = 1 / (sigma**2 + self.sigma_data**2) ** 0.5
        return noisy * c_in, (0.25 * torch.log(sigma)).expand(len(latents))


def noise_process(family: Any, scheduler_config: Any) -> NoiseProcess:
    """The forward process of a family (an :class:`autosel.models.families.Architecture`)."""
    if family.flow:
        return FlowNoise(scheduler_config, family.flow_timestep_scale)
    return DDPMNoise(scheduler_config)


def nearest_timestep(sigma_at: Callable[[int], float], sigma: float, num_train_timesteps: int) -> int:
    """The training timestep whose σ (``sigma_at(t)``, growing with t as in every schedule) is
    nearest ``sigma`` (ties: the lower t), by bisection: about ten ``sigma_at`` calls."""
    sigma_at = functools.lru_cache(maxsize=None)(sigma_at)
    low, high = 0, num_train_timesteps - 1
    while low < high:  # the first t with σ(t) ≥ sigma
        middle = (low + high) // 2
        low, high = (middle + 1, high) if sigma_at(middle) < sigma else (low, middle)
    if low > 0 and abs(sigma_at(low - 1) - sigma) <= abs(sigma_at(low) - sigma):
        return low - 1
    return low
