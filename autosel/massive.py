"""Massive activations: a few channels with huge values across all image tokens.

DiTF (NeurIPS 2025) shows that in diffusion transformers a handful of channels carry values
orders of magnitude above the rest at every image token, which swamps cosine similarities
(raw FLUX features: PCK 29.9 on SPair; zeroing those channels of the AdaLN-modulated input:
67.1). The rule here: a channel is *massive* when its mean |activation| over the image tokens
(every spatial position of every image) is more than ``factor`` (default 100) times the
median channel's mean |activation|.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DEFAULT_FACTOR = 100.0
"""A channel is massive when its mean |value| exceeds this many times the median channel's."""


@dataclass(frozen=True)
class ChannelReport:
    """What :func:`inspect_channels` finds in one feature map.

    Attributes:
        massive_channels: indices of the massive channels, largest first.
        ratios: each massive channel's mean |value| ÷ the median channel's.
        energy_share: the massive channels' share of the map's sum of squares (0–1).
        median_magnitude: the median channel's mean |value|.
        nan, inf: counts of NaN and ±Inf values.
    """

    massive_channels: list[int]
    ratios: list[float]
    energy_share: float
    median_magnitude: float
    nan: int
    inf: int


def channel_magnitudes(value: torch.Tensor) -> torch.Tensor:
    """Mean |value| per channel of a B×C×H×W map over batch and positions (non-finite as 0)."""
    finite = torch.nan_to_num(value.float(), nan=0.0, posinf=0.0, neginf=0.0)
    return finite.abs().mean(dim=(0, 2, 3))


def select_massive(magnitudes: torch.Tensor, factor: float = DEFAULT_FACTOR) -> list[int]:
    """Indices of the channels whose mean |value| exceeds ``factor`` × the median's, largest first.

    With a zero median (most channels silent), every channel that is not silent counts.
    """
    if magnitudes.numel() < 2:
        return []
    median = magnitudes.median()
    threshold = factor * median if median > 0 else torch.zeros(())
    chosen = torch.nonzero(magnitudes > threshold).flatten()
    return sorted(chosen.tolist(), key=lambda c: -float(magnitudes[c]))


def massive_channels(value: torch.Tensor, factor: float = DEFAULT_FACTOR) -> list[int]:
    """Indices of the massive channels of a B×C×H×W map (see the module's rule), largest first."""
    return select_massive(channel_magnitudes(value), factor)


class ChannelStats:
    """Per-channel statistics of a feature map accumulated batch by batch (bounded memory)."""

    def __init__(self) -> None:
        self.abs_sum: torch.Tensor | None = None
        self.square_sum: torch.Tensor | None = None
        self.positions = 0
        self.nan = 0
        self.inf = 0

    def add(self, value: torch.Tensor) -> None:
        """Add a B×C×H×W batch."""
        data = value.detach().float().cpu()
        self.nan += int(torch.isnan(data).sum())
        self.inf += int(torch.isinf(data).sum())
        finite = torch.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
        abs_sum = finite.abs().sum(dim=(0, 2, 3), dtype=torch.float64)
        square_sum = finite.pow(2).sum(dim=(0, 2, 3), dtype=torch.float64)
        self.abs_sum = abs_sum if self.abs_sum is None else self.abs_sum + abs_sum
        self.square_sum = square_sum if self.square_sum is None else self.square_sum + square_sum
        self.positions += data.shape[0] * data.shape[2] * data.shape[3]

    def report(self, factor: float = DEFAULT_FACTOR) -> ChannelReport:
        """The massive channels so far, their ratios and share of the energy, NaN/Inf counts."""
        if self.abs_sum is None:
            raise ValueError("no batch was added")
        magnitudes = self.abs_sum / max(self.positions, 1)
        median = float(magnitudes.median())
        chosen = select_massive(magnitudes, factor)
        total = float(self.square_sum.sum())
        share = float(self.square_sum[chosen].sum()) / total if chosen and total > 0 else 0.0
        return ChannelReport(
            massive_channels=chosen,
            ratios=[float(magnitudes[c]) / median if median > 0 else float("inf") for c in chosen],
            energy_share=share,
            median_magnitude=median,
            nan=self.nan,
            inf=self.inf,
        )


def inspect_channels(value: torch.Tensor, factor: float = DEFAULT_FACTOR) -> ChannelReport:
    """The massive channels of a B×C×H×W map, their size and share of the energy, NaN/Inf counts."""
    stats = ChannelStats()
    stats.add(value)
    return stats.report(factor)


def drop_massive(value: torch.Tensor, factor: float = DEFAULT_FACTOR) -> torch.Tensor:
    """``value`` with its massive channels (found on this batch) set to zero."""
    chosen = massive_channels(value, factor)
    if not chosen:
        return value
    value = value.clone()
    value[:, chosen] = 0
    return value
