"""Aggregation: several activation maps → one feature map, as a config's ``aggregation`` says.

The one implementation used by extraction (:meth:`autosel.extract.FeatureExtractor.combine`)
and by the search's scoring on cached maps (:func:`autosel.optimise.selection.combine_cached`),
so the search scores exactly what the extracted config will produce.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from autosel.config import AggregationSection, ConfigError
from autosel.numerics import l2_normalize

DEFAULT = AggregationSection()


def aggregate(
    maps: Sequence[torch.Tensor], weights: Sequence[float], aggregation: AggregationSection = DEFAULT
) -> torch.Tensor:
    """Combine B×Cᵢ×Hᵢ×Wᵢ ``maps``: each resized (bilinear) to the target resolution (default:
    the largest map's), optionally L2-normalised over channels, weighted, then concatenated or
    summed (no PCA: see :func:`autosel.extract.reduce_pca`).

    Raises:
        ConfigError: ``weighted-sum`` of maps with different channel counts.
    """
    if aggregation.resolution is not None:
        size = aggregation.resolution
        target = (size, size) if isinstance(size, int) else tuple(size)
    else:
        target = max((tuple(value.shape[-2:]) for value in maps), key=lambda hw: hw[0] * hw[1])
    combined = []
    for value, weight in zip(maps, weights):
        value = value.float()
        if tuple(value.shape[-2:]) != target:
            value = F.interpolate(value, size=target, mode="bilinear", align_corners=False)
        if aggregation.l2_normalize:
            value = l2_normalize(value, dim=1)
        combined.append(value * weight)
    if aggregation.combine == "concat":
        return torch.cat(combined, dim=1)
    channels = {m.shape[1] for m in combined}
    if len(channels) > 1:
        raise ConfigError(
            f"aggregation.combine: weighted-sum needs equal channel counts, got {sorted(channels)}; use concat"
        )
    return torch.stack(combined).sum(dim=0) / sum(weights)
