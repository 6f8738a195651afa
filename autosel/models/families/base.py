"""What a model is: one :class:`Architecture` per model, its family's knowledge bound to its config.

An :class:`Architecture` describes one model's denoiser once: its config, text length, VAE
scale and latent channels, native size, and (for the generic path) the pipeline its calls are
recorded from. Each family is a subclass that knows one kind of denoiser: how to build it from
config (the offline catalogue), where its activation points are (:class:`DiscoveredPoint` taps
found by module type), how a prompt becomes its conditioning, how a noisy latent and a
timestep become the arguments of one forward, and which noise process it was trained with.
Families register themselves with what they match (:meth:`Architecture.matches`);
:meth:`Architecture.from_config` picks the one a config belongs to. Everything above the
families (catalogue, :class:`autosel.denoiser.Denoiser`, extraction, sweep, search) is
family-agnostic: adding a family is one module plus its offline configs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from autosel.capture import Tap, TapKind
from autosel.errors import InvalidInputError, UnsupportedModelError
from autosel.models.standin import denoiser_component
from autosel.noise import EDMNoise, NoiseProcess, noise_process

ImageSize = int | tuple[int, int]


@dataclass(frozen=True)
class DiscoveredPoint:
    """An activation point found in a denoiser, before its shape and depth are measured."""

    id: str
    kind: str
    stage: str
    level: int | None
    repeat: int | None
    block: int | None
    tap: Tap
    extra: bool = False


@dataclass(frozen=True)
class Architecture:
    """One model's denoiser, described once (shapes and conditioning, never weights).

    Instances are of a family's class (:class:`autosel.models.families.Flux`, …), chosen by
    :meth:`from_config`; their methods need nothing but the instance.

    Attributes:
        denoiser_config: the denoiser's config (as in ``unet/config.json`` or
            ``transformer/config.json``, ``_class_name`` included).
        text_len: text tokens per prompt (the catalogue's dummy conditioning); default: the
            family's ``default_text_len``.
        vae_scale_factor: image pixels per latent pixel along each side (1 in pixel space).
        latent_channels: channels of the VAE latent (of the pixels in pixel space).
        native_size: the native image side in pixels when the config does not say it (FLUX's
            has no ``sample_size``); default: ``sample_size`` × ``vae_scale_factor``.
        source: where the config came from (shipped file, cache path, folder), for messages.
        calls: a function returning the pipeline whose ``__call__`` the generic path records
            the denoiser's call from (the loaded one, a twin, or a stand-in); ``None`` elsewhere.

    Class attributes (per family):
        name: the family's short name (``sd``, ``sdxl``, ``if``, ``ddpm``, ``pixart``, ``sd3``,
            ``flux``, ``hunyuan``, ``generic``).
        component: the pipeline attribute holding the denoiser (``unet`` or ``transformer``).
        denoiser_class: the diffusers class of the denoiser.
        pixel_space: ``True`` when the denoiser works on pixels (no VAE).
        flow: ``True`` for rectified-flow training (x_t = (1 − σ)·x_0 + σ·ε), else DDPM betas.
        default_text_len: text tokens per prompt when nothing says otherwise.
        default_sample_size: the native latent side when the config has no ``sample_size``.
        fallback: matched only when no other family matches (the generic path).
        default_exclude: id globs a search leaves out unless its space names them.
        records_calls: its inputs are recorded from the pipeline's own call (see
            :meth:`bind_pipeline`), so a catalogue needs the pipeline's configs, not only the
            denoiser's.
    """

    denoiser_config: Mapping[str, Any]
    text_len: int = -1
    vae_scale_factor: int = 8
    latent_channels: int = 4
    native_size: int | None = None
    source: str = field(default="", compare=False)
    calls: Callable[[], Any] | None = field(default=None, compare=False, repr=False)

    name: ClassVar[str] = ""
    component: ClassVar[str] = "unet"
    denoiser_class: ClassVar[str] = ""
    pixel_space: ClassVar[bool] = False
    flow: ClassVar[bool] = False
    default_text_len: ClassVar[int] = 77
    default_sample_size: ClassVar[int] = 64
    description: ClassVar[str] = ""
    fallback: ClassVar[bool] = False
    records_calls: ClassVar[bool] = False
    default_exclude: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:  # a family, not a shared base (such as the UNet families')
            _FAMILIES[cls.name] = cls

    def __post_init__(self) -> None:
        if self.text_len < 0:
            object.__setattr__(self, "text_len", type(self).default_text_len)

    # -- what a family matches -------------------------------------------------------------

    @classmethod
    def matches(cls, config: Mapping[str, Any]) -> bool:
        """Whether a denoiser config belongs to this family (default: its diffusers class)."""
        return str(config.get("_class_name", "")) == cls.denoiser_class

    @classmethod
    def text_len_for(cls, pipeline_class: str, text_encoder_config: Mapping[str, Any] | None) -> int | None:
        """Text tokens per prompt of a pipeline of class ``pipeline_class`` whose first text
        encoder has ``text_encoder_config``; ``None``: the family's default."""
        return None

    @staticmethod
    def from_config(denoiser_config: Mapping[str, Any], source: str = "", **fields: Any) -> Architecture:
        """The architecture of ``denoiser_config``, of the family it matches.

        Raises:
            UnsupportedModelError: no family matches (names the class and the supported ones).
        """
        family = family_of_config(denoiser_config, source or "model")
        if family.pixel_space:
            fields.update(vae_scale_factor=1, latent_channels=int(denoiser_config.get("in_channels", 3)))
        return family(dict(denoiser_config), source=source, **fields)

    @staticmethod
    def from_pipeline(pipeline: Any) -> Architecture:
        """The architecture of a loaded pipeline, read from its components' own configs."""
        component = denoiser_component(name for name, value in pipeline.components.items() if value is not None)
        denoiser = getattr(pipeline, component or "unet")
        config = {**denoiser.config, "_class_name": type(denoiser).__name__}
        family = family_of_config(config, f"loaded {type(pipeline).__name__}")
        fields: dict[str, Any] = {}
        encoder_config = getattr(getattr(pipeline, "text_encoder", None), "config", None)
        if hasattr(encoder_config, "to_dict"):
            encoder_config = encoder_config.to_dict()
        text_len = family.text_len_for(type(pipeline).__name__, encoder_config)
        if text_len is not None:
            fields["text_len"] = text_len
        vae = getattr(pipeline, "vae", None)
        if vae is not None and "block_out_channels" in vae.config:  # other VAEs: the generic path reads the pipeline
            fields["vae_scale_factor"] = 2 ** (len(vae.config.block_out_channels) - 1)
            fields["latent_channels"] = int(vae.config.latent_channels)
        architecture = Architecture.from_config(config, source=f"loaded {type(pipeline).__name__}", **fields)
        return architecture.bind_pipeline(lambda: pipeline)

    def bind_pipeline(self, pipeline: Callable[[], Any]) -> Architecture:
        """This architecture with its calls taken from ``pipeline()`` where the family records
        them (the generic path); unchanged for families that write their inputs themselves."""
        return self

    # -- shapes ----------------------------------------------------------------------------

    @property
    def family(self) -> str:
        """The family's short name (as ``ModelSpec.family`` and ``autosel models`` show it)."""
        return self.name

    @property
    def unet_config(self) -> Mapping[str, Any]:
        """The denoiser's config (the name predates transformer families)."""
        return self.denoiser_config

    @property
    def patch_size(self) -> int:
        """Latent pixels per image token along each side (1 for UNets)."""
        return 1

    @property
    def native_resolution(self) -> int:
        """The image side the model was trained at, in pixels."""
        if self.native_size is not None:
            return self.native_size
        return int(self.denoiser_config.get("sample_size") or self.default_sample_size) * self.vae_scale_factor

    @property
    def pixel_step(self) -> int:
        """Image sides must be multiples of this: one token (or latent pixel) per step."""
        return self.vae_scale_factor * self.patch_size

    def latent_size(self, image_size: ImageSize | None = None) -> tuple[int, int]:
        """Latent (height, width) for an image of ``image_size`` pixels (int: square).

        Raises:
            InvalidInputError: a side is not a positive multiple of the model's pixel step
                (the VAE scale factor times the transformer's patch size).
        """
        height, width = _as_hw(image_size if image_size is not None else self.native_resolution)
        step = self.pixel_step
        for side in (height, width):
            if side <= 0 or side % step:
                what = "the VAE scale factor" if step == self.vae_scale_factor else "the VAE scale factor × patch size"
                raise InvalidInputError(
                    f"image size {height}x{width} is not valid: each side must be a positive "
                    f"multiple of {step} ({what})"
                )
        return height // self.vae_scale_factor, width // self.vae_scale_factor

    def token_grid(self, latent_hw: tuple[int, int]) -> tuple[int, int] | None:
        """(H, W) of the image-token grid for a latent of ``latent_hw``; ``None`` for UNets,
        whose taps record their own grid."""
        return None

    # -- the denoiser and its points -------------------------------------------------------

    def build_denoiser(self, device: str | torch.device = "meta") -> nn.Module:
        """The denoiser from config (no weights on the meta device, random ones elsewhere)."""
        import diffusers

        config = {k: v for k, v in self.denoiser_config.items() if not k.startswith("_")}
        with torch.device(device):
            module = getattr(diffusers, self.denoiser_class).from_config(config)
        return module.eval()

    def discover(self, denoiser: nn.Module) -> list[DiscoveredPoint]:
        """Every activation point of ``denoiser`` (any order; the catalogue sorts by depth)."""
        raise NotImplementedError

    # -- inputs ----------------------------------------------------------------------------

    def dummy_conditioning(
        self,
        batch: int,
        device: str | torch.device = "meta",
        dtype: torch.dtype = torch.float32,
        image_hw: tuple[int, int] | None = None,
    ) -> dict[str, Any]:
        """Zero conditioning with the shapes of :meth:`encode_prompt`'s, for the catalogue
        (``image_hw``: the image size, for conditioning that depends on it)."""
        return {}

    def dummy_inputs(self, sample: torch.Tensor, timestep: torch.Tensor) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Arguments of a shape-only forward on ``sample`` (meta tensors) at the sample's size."""
        latent_hw = tuple(sample.shape[-2:])
        image_hw = (latent_hw[0] * self.vae_scale_factor, latent_hw[1] * self.vae_scale_factor)
        conditioning = self.dummy_conditioning(len(sample), image_hw=image_hw)
        with torch.device("meta"):
            return self.inputs(sample, timestep, conditioning)

    def encode_prompt(
        self, pipeline: Any, prompt: str, device: torch.device, dtype: torch.dtype, image_hw: tuple[int, int]
    ) -> dict[str, Any]:
        """The conditioning of one prompt for a batch of one (tensors with a leading 1)."""
        return {}

    def inputs(
        self, sample: torch.Tensor, timestep: torch.Tensor, conditioning: Mapping[str, Any]
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
        """The forward noise process of ``pipeline`` (its training betas, an EDM scheduler's σ
        ramp, or rectified flow)."""
        if type(pipeline.scheduler).__name__.startswith("EDM"):  # Playground v2.5
            return EDMNoise(pipeline.scheduler)
        return noise_process(self, pipeline.scheduler.config)


_FAMILIES: dict[str, type[Architecture]] = {}
"""Every family by name, in the order they registered (see ``Architecture.__init_subclass__``)."""


def registered_families() -> dict[str, type[Architecture]]:
    """Every family class, by name."""
    return dict(_FAMILIES)


def supported_denoisers() -> str:
    """A one-line list of the denoiser classes and families autosel supports (for messages)."""
    named = [f"{family.denoiser_class} ({name})" for name, family in _FAMILIES.items() if not family.fallback]
    fallbacks = [f"{family.description} ({name})" for name, family in _FAMILIES.items() if family.fallback]
    return ", ".join(named + fallbacks)


def family_of_config(config: Mapping[str, Any], source: str = "model") -> type[Architecture]:
    """The family class a denoiser config belongs to (``unet/config.json`` or
    ``transformer/config.json``); fallbacks (the generic path) only when no other matches.

    Raises:
        UnsupportedModelError: no family matches; names the class and the supported ones.
    """
    families = sorted(_FAMILIES.values(), key=lambda family: family.fallback)
    for family in families:
        if family.matches(config):
            return family
    class_name = str(config.get("_class_name", "UNet2DConditionModel"))
    raise UnsupportedModelError(
        f"{source} has a {class_name} denoiser, which autosel does not support: it is neither a "
        f"family with an adapter nor a diffusers transformer for the generic path (supported: "
        f"{supported_denoisers()}). See docs/onboarding.md"
    )


def _as_hw(image_size: ImageSize) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    height, width = image_size
    return int(height), int(width)


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
