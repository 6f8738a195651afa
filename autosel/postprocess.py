"""Post-processing of one captured activation before aggregation: the one registry that feature
configs (``post:``), the screen and the cache fill all use, by name."""

from __future__ import annotations

from collections.abc import Callable

import torch

from autosel.massive import drop_massive
from autosel.numerics import l2_normalize

PostProcessor = Callable[[torch.Tensor], torch.Tensor]

POST_PROCESSORS: dict[str, PostProcessor] = {
    "none": lambda value: value,
    "l2": lambda value: l2_normalize(value, dim=1),
    "drop-massive": drop_massive,
}
"""Each ``post`` a feature config may name, as a function of a B×C×H×W map."""


def post_process(value: torch.Tensor, post: str) -> torch.Tensor:
    """``value`` (B×C×H×W) post-processed as ``post`` names (a key of :data:`POST_PROCESSORS`)."""
    return POST_PROCESSORS[post](value)
