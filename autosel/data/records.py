"""What proxy tasks read: keypoint pairs and labelled segmentation images, from any source.

Loaders (built-in shapes, SPair-71k, image + label folders) turn their files into these
records; tasks never see file formats. Images are kept as paths (opened on demand) or as
H×W×3 uint8 arrays (generated data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from autosel.errors import DatasetError
from autosel.images import ImageReadError, read_rgb

ImageSource = Union[Path, np.ndarray]
LabelSource = Union[Path, np.ndarray]


def read_image(source: ImageSource) -> np.ndarray:
    """An image source as an H×W×3 uint8 RGB array.

    Raises:
        DatasetError: the file cannot be decoded (the message names it and why).
    """
    if isinstance(source, np.ndarray):
        return source
    try:
        return np.asarray(read_rgb(source))
    except ImageReadError as error:
        raise DatasetError(f"dataset image {error}") from None


def read_label(source: LabelSource) -> np.ndarray:
    """A label source as an H×W int64 array (PNG: its palette indices or grey values; .npy)."""
    if isinstance(source, np.ndarray):
        return source.astype(np.int64, copy=False)
    if source.suffix.lower() == ".npy":
        return np.load(source, allow_pickle=False).astype(np.int64)
    with Image.open(source) as opened:
        if opened.mode not in ("P", "L", "I", "I;16"):
            opened = opened.convert("L")
        return np.asarray(opened).astype(np.int64)


@dataclass(frozen=True)
class KeypointPair:
    """One source → target pair with corresponding keypoints.

    Attributes:
        source, target: indices into the dataset's ``images``.
        category: the object category.
        source_points, target_points: K×2 float (x, y) pixel coordinates in each image.
        visible: K booleans: the keypoint is annotated in both images.
        source_size, target_size: (height, width) in pixels of the images as stored.
        target_bbox: (x1, y1, x2, y2) of the target object in target pixels.
        name: where the pair comes from (annotation file or generator index).
    """

    source: int
    target: int
    category: str
    source_points: np.ndarray
    target_points: np.ndarray
    visible: np.ndarray
    source_size: tuple[int, int]
    target_size: tuple[int, int]
    target_bbox: tuple[float, float, float, float]
    name: str = ""


@dataclass
class CorrespondenceData:
    """Images and the keypoint pairs among them (an image may be in several pairs)."""

    name: str
    images: list[ImageSource]
    pairs: list[KeypointPair]

    @property
    def categories(self) -> list[str]:
        return sorted({pair.category for pair in self.pairs})


@dataclass
class SegmentationData:
    """Images with dense integer labels: a few labelled ``train`` images, ``test`` images to score.

    Attributes:
        images, labels: parallel lists; label value ``i`` means ``class_names[i]``.
        class_names: the names of classes 0…N-1.
        train, test: indices into ``images``.
        ignore_index: a label value that is never trained on or scored (e.g. 255 borders).
        categories: optional per-image category, for breakdowns.
    """

    name: str
    images: list[ImageSource]
    labels: list[LabelSource]
    class_names: list[str]
    train: list[int]
    test: list[int]
    ignore_index: int | None = 255
    categories: list[str] = field(default_factory=list)
