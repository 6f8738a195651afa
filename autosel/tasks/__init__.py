"""Proxy tasks that score feature maps (they never run the diffusion model themselves)."""

from autosel.tasks.correspondence import match_points, match_prepared, pck, prepare_features

__all__ = ["match_points", "match_prepared", "pck", "prepare_features"]
