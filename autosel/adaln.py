"""DiTF's AdaLN feature with channel discard (Gan et al., NeurIPS 2025; github.com/ganchaofan0000/DiTF).

A transformer block's ``norm-in`` is (1 + scale)·LN(x) + shift of its input x. DiTF computes it
differently from what a hook on the norm's output gives: it averages the block's *input* x
over the ensemble's noise draws, zeroes the massive-activation channels of that mean *before*
the LayerNorm (so their huge values do not dominate the normalisation of the other channels),
then applies the block's own LayerNorm and its AdaLN shift and scale (``eval_spair.py``,
``--cd``). An activation asks for it with ``discard_channels`` on a ``…-norm-in`` id: the
extractor then captures the norm's input tokens and the output of its modulation layer
(``norm.linear``: shift, scale, … for AdaLayerNormZero and AdaLayerNormZeroSingle) and this
module combines them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from autosel.capture import Tap, TapKind
from autosel.catalog import ActivationPoint
from autosel.errors import InvalidInputError

INPUT_SUFFIX = "#block-input"
MODULATION_SUFFIX = "#modulation"


def norm_module(denoiser: nn.Module, point: ActivationPoint) -> nn.Module:
    """The AdaLN module behind a ``norm-in`` point (with ``linear`` modulation and a ``norm`` LayerNorm).

    Raises:
        InvalidInputError: ``point`` is not a ``norm-in`` point of an AdaLayerNormZero-style norm.
    """
    module = denoiser.get_submodule(point.tap.module) if point.kind == "norm-in" else None
    if module is None or not isinstance(getattr(module, "linear", None), nn.Linear) or not isinstance(
        getattr(module, "norm", None), nn.LayerNorm
    ):
        raise InvalidInputError(
            f"discard_channels on '{point.id}': only the norm-in of a block with an AdaLayerNormZero-style norm "
            "(a linear shift/scale modulation and a LayerNorm: SD3 and FLUX blocks) can discard channels"
        )
    return module


def discard_points(point: ActivationPoint) -> dict[str, ActivationPoint]:
    """The two captures a channel-discarded ``norm-in`` needs: the norm's input tokens (the
    block's input, image tokens on the grid) and its modulation layer's output (B×k·C)."""
    path = point.tap.module
    return {
        point.id + INPUT_SUFFIX: replace(point, id=point.id + INPUT_SUFFIX, tap=Tap(path, TapKind.INPUT_TOKENS)),
        point.id + MODULATION_SUFFIX: replace(
            point, id=point.id + MODULATION_SUFFIX, tap=Tap(f"{path}.linear", TapKind.OUTPUT)
        ),
    }


def discard_and_modulate(
    norm: nn.Module, block_input: torch.Tensor, modulation: torch.Tensor, channels: Sequence[int]
) -> torch.Tensor:
    """(1 + scale)·LN(x with ``channels`` zeroed) + shift, B×C×H×W, in float32.

    Args:
        norm: the block's AdaLN module (its LayerNorm's eps, and affine weights if any, are used).
        block_input: the block's input x, B×C×H×W (already averaged over the ensemble).
        modulation: the modulation layer's output, B×k·C: shift first, then scale.
        channels: channel indices zeroed before the LayerNorm.

    Raises:
        InvalidInputError: a channel index outside 0…C−1.
    """
    width = block_input.shape[1]
    bad = [c for c in channels if not 0 <= c < width]
    if bad:
        raise InvalidInputError(f"discard_channels {bad} are outside this activation's channels 0…{width - 1}")
    x = block_input.float().clone()
    x[:, list(channels)] = 0
    layer_norm: nn.LayerNorm = norm.norm
    weight = None if layer_norm.weight is None else layer_norm.weight.float()
    bias = None if layer_norm.bias is None else layer_norm.bias.float()
    tokens = F.layer_norm(x.permute(0, 2, 3, 1), (width,), weight, bias, layer_norm.eps)
    shift, scale = modulation.float()[:, :width], modulation.float()[:, width : 2 * width]
    modulated = tokens * (1 + scale[:, None, None, :]) + shift[:, None, None, :]
    return modulated.permute(0, 3, 1, 2).contiguous()
