"""Proxy data: the built-in procedural shapes dataset (more loaders arrive with the proxy tasks)."""

from autosel.data.shapes import CATEGORIES, SPLITS, ShapeImage, ShapePair, ShapesDataset

__all__ = ["CATEGORIES", "SPLITS", "ShapeImage", "ShapePair", "ShapesDataset"]
