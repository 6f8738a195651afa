"""Model families: one adapter per kind of denoiser (see :class:`Family`).

``FAMILIES`` maps family names to adapters; :func:`family_of_config` tells a denoiser's family
from its config (``_class_name`` and the few fields that set UNet families apart).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autosel.errors import UnsupportedModelError
from autosel.models.families.base import Candidate, Family, expand_rows
from autosel.models.families.flux import Flux
from autosel.models.families.generic import Generic
from autosel.models.families.hunyuan import HunyuanDiT
from autosel.models.families.pixart import PixArt
from autosel.models.families.sd3 import StableDiffusion3
from autosel.models.families.unet import DeepFloydIF, StableDiffusion, StableDiffusionXL, UnconditionalUNet

FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        StableDiffusion(), StableDiffusionXL(), DeepFloydIF(), UnconditionalUNet(),
        PixArt(), HunyuanDiT(), StableDiffusion3(), Flux(), Generic(),
    )
}
"""Every supported family, by name."""

_DENOISER_CLASSES = {
    "UNet2DModel": "ddpm",
    "PixArtTransformer2DModel": "pixart",
    "HunyuanDiT2DModel": "hunyuan",
    "SD3Transformer2DModel": "sd3",
    "FluxTransformer2DModel": "flux",
}


def supported_denoisers() -> str:
    """A one-line list of the denoiser classes and families autosel supports (for messages)."""
    classes = ["UNet2DConditionModel (sd, sdxl, if)", "Transformer2DModel with ada_norm_single (pixart)"]
    classes += [f"{name} ({family})" for name, family in _DENOISER_CLASSES.items()]
    classes.append("any other diffusers *Transformer* class (generic)")
    return ", ".join(classes)


def family_of_config(config: Mapping[str, Any], source: str = "model") -> Family:
    """The family of a denoiser config (as in ``unet/config.json`` or ``transformer/config.json``).

    Raises:
        UnsupportedModelError: the class is not one autosel supports; names it and the list.
    """
    class_name = str(config.get("_class_name", "UNet2DConditionModel"))
    if class_name == "UNet2DConditionModel":
        if config.get("addition_embed_type") == "text_time":
            return FAMILIES["sdxl"]
        if int(config.get("in_channels", 4)) == 3 or config.get("addition_embed_type") == "text":
            return FAMILIES["if"]
        return FAMILIES["sd"]
    if class_name == "Transformer2DModel" and config.get("norm_type") == "ada_norm_single":
        return FAMILIES["pixart"]
    if class_name in _DENOISER_CLASSES:
        return FAMILIES[_DENOISER_CLASSES[class_name]]
    if is_image_transformer_class(class_name):
        return FAMILIES["generic"]
    raise UnsupportedModelError(
        f"{source} has a {class_name} denoiser, which autosel does not support: it is neither a "
        f"family with an adapter ({supported_denoisers()}) nor a diffusers transformer class for the "
        "generic path. See docs/onboarding.md"
    )


def is_image_transformer_class(class_name: str) -> bool:
    """Whether diffusers has a model class ``class_name`` that the generic path may take: one
    of its transformers (``diffusers.models.transformers``, whatever the class is called, e.g.
    ``LuminaNextDiT2DModel``); UNets need a known block vocabulary, so they go through the UNet
    families."""
    import diffusers

    try:
        model = getattr(diffusers, class_name, None)
    except Exception:  # noqa: BLE001 - a lazy import that fails is not a class we can use
        return False
    return (
        isinstance(model, type)
        and issubclass(model, diffusers.ModelMixin)
        and model.__module__.startswith("diffusers.models.transformers.")
    )


__all__ = ["FAMILIES", "Candidate", "Family", "expand_rows", "family_of_config", "supported_denoisers"]
