"""Shared pieces of the diffusion-transformer adapters: block numbering and the id grammar.

Ids follow the seed codebase: ``vit-block{i}-{kind}`` with blocks numbered in forward order
(FLUX continues from its double-stream blocks into its single-stream ones); image tokens
only, folded onto the patch grid (latent H/patch × W/patch). Before them, ``dit-in``: the
denoiser's own input, the noisy latent before patch embedding or packing, on the latent grid
(B×C×h×w, as ``unet-in`` for UNets), so that what the denoiser was given can be checked.
Kinds, in forward order:

``norm-in``   the AdaLN-modulated normalised input of the attention, (1+scale)·LN(x)+shift
              (DiTF's feature); Hunyuan-DiT's shift-only norm
``self-q``, ``self-k``, ``self-v``   the image tokens' attention projections (joint attention
              too: the text stream has its own projections)
``self-map``, ``cross-q``, ``cross-map``   PixArt and Hunyuan-DiT (cross-attention to text)
``norm-out``  the modulated normalised input of the feed-forward (gdf's FLUX ``norm-out``)
``ffn-inner`` the feed-forward's hidden activation (after its GELU)
``out``       the block's output (image tokens)
"""

from __future__ import annotations

from collections.abc import Mapping

from autosel.capture import Tap, TapKind
from autosel.models.families.base import Architecture, DiscoveredPoint

DIT_KINDS = ("norm-in", "self-q", "self-k", "self-v", "self-map", "cross-q", "cross-map", "norm-out", "ffn-inner", "out")
"""The per-block kinds of diffusion transformers, in forward order."""

EXTRA_KINDS = frozenset({"norm-in"})
"""Kinds the seed codebase does not gather for transformers (marked ``extra``); joint-attention
families add their q/k/v (gdf gathers those of PixArt's ``BasicTransformerBlock`` only)."""

Parts = Mapping[str, tuple[str, TapKind, int]]
"""``{kind: (submodule path inside the block, how to read it, tuple index)}``; ``""`` = the block."""


def block_candidates(index: int, path: str, parts: Parts, extra: frozenset[str] = EXTRA_KINDS) -> list[DiscoveredPoint]:
    """The candidates of transformer block number ``index`` living at module ``path``; kinds in
    ``extra`` are marked as beyond the seed codebase's set."""
    taps = {
        kind: Tap(f"{path}.{sub}" if sub else path, how, index=element)
        for kind, (sub, how, element) in parts.items()
    }
    return [
        DiscoveredPoint(
            f"vit-block{index}-{kind}", "vit-block-out" if kind == "out" else kind, "vit", None, None, index,
            taps[kind], extra=kind in extra,
        )
        for kind in DIT_KINDS
        if kind in taps
    ]


def denoiser_input(patch: int = 1, image_first: bool = False) -> DiscoveredPoint:
    """``dit-in``: the denoiser's latent argument, unpacked onto the latent grid (``patch``: the
    side of the latent patches its packing puts in one token or one channel group)."""
    tap = Tap("", TapKind.INPUT, patch=patch, image_first=image_first)
    return DiscoveredPoint("dit-in", "dit-in", "dit", None, None, None, tap, extra=True)


def patch_grid(latent_hw: tuple[int, int], patch: int) -> tuple[int, int]:
    """The token grid of a latent of ``latent_hw`` cut into ``patch``×``patch`` patches."""
    return latent_hw[0] // patch, latent_hw[1] // patch


class DiT(Architecture):
    """What the diffusion-transformer families share: image tokens on a patch grid whose patch
    size the config states (``patch_size``, 2 by default)."""

    component = "transformer"

    @property
    def patch_size(self) -> int:
        return int(self.denoiser_config.get("patch_size", 2))

    def token_grid(self, latent_hw: tuple[int, int]) -> tuple[int, int]:
        return patch_grid(latent_hw, self.patch_size)
