"""Evaluation protocols: how a config's activations become the vectors a correspondence task
compares, named so that every score says which one it used.

Published numbers differ by convention, not only by features: DIFT and gdf upsample the *raw*
activations, L2-normalise once over all channels and read the query at the keypoint's rounded
cell; autosel's default normalises each activation first (so that wide activations do not
drown narrow ones in a concatenation) and reads the query bilinearly between the four cells
around the keypoint. On the same features the two can differ by several PCK points (README).
DIFT also prompts each image with its category ("a photo of a {category}"); the ``dift``
protocol does too, so it runs DIFT's SPair setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from autosel.config import FeatureConfig
from autosel.errors import InvalidInputError, did_you_mean
from autosel.prompts import DIFT_PROMPT


@dataclass(frozen=True)
class Protocol:
    """One evaluation convention.

    Attributes:
        name: how scores are labelled (``score.protocol`` in best.yaml, report and README tables).
        per_activation_l2: L2-normalise each activation over channels at the aggregation
            resolution before concatenating (``None``: as the config says).
        query: ``bilinear`` (the four working cells around the keypoint, each normalised,
            mixed bilinearly) or ``nearest`` (the keypoint's rounded working cell).
        description: the whole pipeline in one sentence, the task's upsample-then-normalise step included.
        prompt: the extraction prompt the protocol sets (``None``: as the config says).
    """

    name: str
    per_activation_l2: bool | None
    query: Literal["bilinear", "nearest"]
    description: str
    prompt: str | None = None

    def apply(self, config: FeatureConfig) -> FeatureConfig:
        """``config`` with this protocol's normalisation and prompt (unchanged where it defers to the config)."""
        if self.per_activation_l2 is not None and config.aggregation.l2_normalize != self.per_activation_l2:
            config = config.replace(aggregation={**config.aggregation.model_dump(), "l2_normalize": self.per_activation_l2})
        if self.prompt is not None and config.extraction.prompt != self.prompt:
            config = config.replace(extraction={**config.extraction.model_dump(), "prompt": self.prompt})
        return config


PROTOCOLS = {
    "autosel": Protocol(
        "autosel", None, "bilinear",
        "each activation resized to the aggregation resolution and L2-normalised over channels (aggregation.l2_normalize), "
        "concatenated, upsampled bilinearly to the working grid and L2-normalised per cell; the query mixes the four "
        "cells around the keypoint bilinearly",
    ),
    "dift": Protocol(
        "dift", False, "nearest",
        "raw activations resized to the aggregation resolution and concatenated, upsampled bilinearly to the working "
        "grid and L2-normalised once per cell over all channels; the query is the keypoint's rounded cell "
        "(DIFT's and gdf's nearest-neighbour convention); each image prompted 'a photo of a {category}' as DIFT's SPair run",
        prompt=DIFT_PROMPT,
    ),
}
DEFAULT_PROTOCOL = "autosel"


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name``.

    Raises:
        InvalidInputError: an unknown name, with the close match and the list.
    """
    if name not in PROTOCOLS:
        raise InvalidInputError(f"unknown protocol '{name}':{did_you_mean(name, PROTOCOLS)} use {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]
