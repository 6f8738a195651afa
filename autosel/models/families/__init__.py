"""Model families: one :class:`Architecture` subclass per kind of denoiser.

Each family registers itself when its module is imported (here, all of them) with what it
matches; :meth:`Architecture.from_config` and :func:`family_of_config` tell a denoiser's
family from its config, the generic path (:class:`Generic`) being the fallback for any other
diffusers transformer.
"""

from __future__ import annotations

from autosel.models.families.base import (
    Architecture,
    DiscoveredPoint,
    ImageSize,
    expand_rows,
    family_of_config,
    registered_families,
    supported_denoisers,
)
from autosel.models.families.flux import Flux
from autosel.models.families.generic import Generic
from autosel.models.families.hunyuan import HunyuanDiT
from autosel.models.families.pixart import PixArt
from autosel.models.families.sd3 import StableDiffusion3
from autosel.models.families.unet import DeepFloydIF, StableDiffusion, StableDiffusionXL, UnconditionalUNet

__all__ = [
    "Architecture",
    "DiscoveredPoint",
    "DeepFloydIF",
    "Flux",
    "Generic",
    "HunyuanDiT",
    "ImageSize",
    "PixArt",
    "StableDiffusion",
    "StableDiffusion3",
    "StableDiffusionXL",
    "UnconditionalUNet",
    "expand_rows",
    "family_of_config",
    "registered_families",
    "supported_denoisers",
]
