"""What every model family adapter provides: its denoiser, its activation points, its inputs.

A :class:`Family` knows one kind of denoiser: how to build it from config (the offline
catalogue), where its activation points are (:class:`Candidate` taps found by module type),
how a prompt becomes its conditioning, how a noisy latent and a timestep become the keyword
arguments of one forward, and which noise process it was trained with. Everything above the
adapters (catalogue, :class:`autosel.denoiser.Denoiser`, extraction, sweep, search) is
family-agnostic: adding a family is one adapter module plus its offline configs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from autosel.capture import Tap, TapKind

if TYPE_CHECKING:
    from autosel.models.architecture import Architecture
    from autosel.noise import NoiseProcess


@dataclass(frozen=True)
class Candidate:
    """An activation point found in a denoiser, before its shape and depth are measured."""

    id: str
    kind: str
    stage: str
    level: int | None
    repeat: int | None
    block: int | None
    tap: Tap
    extra: bool = False


class Family:
    """Base class of the family adapters (one instance per family, stateless).

    Attributes:
        name: the family's short name (``sd``, ``sdxl``, ``if``, ``ddpm``, ``pixart``, ``sd3``,
            ``flux``, ``hunyuan``).
        component: the pipeline attribute holding the denoiser (``unet`` or ``transformer``).
        denoiser_class: the diffusers class of the denoiser.
        pixel_space: ``True`` when the denoiser works on pixels (no VAE).
        flow: ``True`` for rectified-flow training (x_t = (1 − σ)·x_0 + σ·ε), else DDPM betas.
        text_len: text tokens used for the offline catalogue's dummy conditioning.
        default_sample_size: the native latent side when the config has no ``sample_size``.
    """

    name: ClassVar[str]
    component: ClassVar[str] = "unet"
    denoiser_class: ClassVar[str]
    pixel_space: ClassVar[bool] = False
    flow: ClassVar[bool] = False
    text_len: ClassVar[int] = 77
    default_sample_size: ClassVar[int] = 64
    description: ClassVar[str] = ""

    def build(self, architecture: Architecture, device: str | torch.device = "meta") -> nn.Module:
        """The denoiser from config (no weights on the meta device, random ones elsewhere)."""
        import diffusers

        config = {k: v for k, v in architecture.denoiser_config.items() if not k.startswith("_")}
        with torch.device(device):
            module = getattr(diffusers, self.denoiser_class).from_config(config)
        return module.eval()

    def discover(self, denoiser: nn.Module, architecture: Architecture | None = None) -> list[Candidate]:
        """Every activation point of ``denoiser`` (any order; the catalogue sorts by depth);
        ``architecture`` for families that measure their points through the pipeline's call."""
        raise NotImplementedError

    def token_grid(self, architecture: Architecture, latent_hw: tuple[int, int]) -> tuple[int, int] | None:
        """(H, W) of the image-token grid for a latent of ``latent_hw``; ``None`` for UNets,
        whose taps record their own grid."""
        return None

    def dummy_conditioning(
        self,
        architecture: Architecture,
        batch: int,
        device: str | torch.device = "meta",
        dtype: torch.dtype = torch.float32,
        image_hw: tuple[int, int] | None = None,
    ) -> dict[str, Any]:
        """Zero conditioning with the shapes of :meth:`encode_prompt`'s, for the catalogue
        (``image_hw``: the image size, for conditioning that depends on it)."""
        return {}

    def encode_prompt(
        self,
        pipeline: Any,
        architecture: Architecture,
        prompt: str,
        device: torch.device,
        dtype: torch.dtype,
        image_hw: tuple[int, int],
    ) -> dict[str, Any]:
        """The conditioning of one prompt for a batch of one (tensors with a leading 1)."""
        return {}

    def inputs(
        self,
        architecture: Architecture,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        conditioning: Mapping[str, Any],
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Positional and keyword arguments of one denoiser forward.

        Args:
            sample: the noisy latent (or pixels), B×C×H×W.
            timestep: the denoiser's timestep input, one per row (already on its scale).
            conditioning: :meth:`encode_prompt`'s dict expanded to B rows.
        """
        return (sample, timestep), dict(conditioning)

    def live_inputs(
        self, pipeline: Any, sample: torch.Tensor, timestep: int, conditioning: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        """Arguments of one forward at config ``timestep`` taken from ``pipeline`` itself, or
        ``None`` when the family builds them with :meth:`inputs` (every hand-written family)."""
        return None

    def attach(self, pipeline: Any, text_encoders_on_device: Any) -> None:
        """Called once by the engine with the loaded pipeline and a context-manager factory that
        puts its text encoders on the denoiser's device (for families that run the pipeline)."""

    def make_noise(self, pipeline: Any) -> NoiseProcess:
        """The forward noise process of ``pipeline`` (its training betas, or rectified flow)."""
        from autosel.noise import noise_process

        return noise_process(self, pipeline.scheduler.config)


def expand_rows(conditioning: Mapping[str, Any], batch: int) -> dict[str, Any]:
    """Conditioning of batch 1 repeated to ``batch`` rows; nested dicts too.

    Contiguous copies, since some denoisers ``view`` their conditioning (Hunyuan-DiT). Tensors
    whose first dimension is not 1 (e.g. FLUX's unbatched text ids) are left as they are.
    """
    def grow(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.expand(batch, *value.shape[1:]).contiguous() if value.ndim and value.shape[0] == 1 else value
        if isinstance(value, Mapping):
            return {key: grow(item) for key, item in value.items()}
        return value

    return {key: grow(value) for key, value in conditioning.items()}


def transformer_block_taps(path: str, parts: Mapping[str, tuple[str, TapKind, int]]) -> dict[str, Tap]:
    """Taps of one transformer block, from ``{kind: (submodule, how, tuple index)}``;
    ``""`` as submodule means the block itself. Token grids come from the caller."""
    return {
        kind: Tap(f"{path}.{sub}" if sub else path, how, index=index)
        for kind, (sub, how, index) in parts.items()
    }
