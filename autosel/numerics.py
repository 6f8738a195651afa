"""Tensor helpers shared by extraction, caching and scoring."""

from __future__ import annotations

import torch


def l2_normalize(tensor: torch.Tensor, dim: int = 1, eps: float = 1e-12) -> torch.Tensor:
    """``tensor`` divided by its L2 norm along ``dim`` (norms below ``eps`` count as ``eps``).

    The same as :func:`torch.nn.functional.normalize`, but the norm is taken as a sum of
    squares: on CPU that is about 10× faster than ``linalg.vector_norm`` along a dimension
    other than the innermost (the channels of a C×H×W map), which dominated the sweep.
    """
    return tensor / tensor.square().sum(dim, keepdim=True).sqrt().clamp_min(eps)
