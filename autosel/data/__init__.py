"""Proxy data: the built-in shapes, SPair-71k and image + label folders, behind spec strings."""

from autosel.data.folder import load_folder
from autosel.data.records import (
    CorrespondenceData,
    KeypointPair,
    SegmentationData,
    read_image,
    read_label,
)
from autosel.data.shapes import CATEGORIES, SPLITS, ShapeImage, ShapePair, ShapesDataset
from autosel.data.spair import SPAIR_SPLITS, load_spair
from autosel.data.specs import DatasetSpec, load_correspondence, load_segmentation, shapes_class_names

__all__ = [
    "CATEGORIES",
    "SPAIR_SPLITS",
    "SPLITS",
    "CorrespondenceData",
    "DatasetSpec",
    "KeypointPair",
    "SegmentationData",
    "ShapeImage",
    "ShapePair",
    "ShapesDataset",
    "load_correspondence",
    "load_folder",
    "load_segmentation",
    "load_spair",
    "read_image",
    "read_label",
    "shapes_class_names",
]
