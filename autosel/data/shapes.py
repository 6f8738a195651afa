"""A procedural "shapes" dataset with exact semantic ground truth.

Each image holds one upright object of one of four categories (house, tree, bottle, car),
drawn from parts under a random similarity transform (scale, moderate rotation, aspect,
translation) with random part colours, textures and background, so that two instances of a
category differ strongly in appearance but share named keypoints and parts. Ground truth per
image: keypoints with visibility, the object's bounding box and a part label map (0 is
background). Everything is a pure function of (split, index, size): the same arguments give
the same image on every machine.

Splits are disjoint by construction (each has its own seed stream): ``train`` for the model,
``search`` and ``heldout`` for the proxy tasks.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

SPLITS = ("train", "search", "heldout")


@dataclass(frozen=True)
class Category:
    """A category: parts drawn in order (later over earlier) and named keypoints.

    Coordinates are object-local, in a unit box: x right, y down, object roughly in
    [-0.5, 0.5]². Parts are ``(name, kind, points)`` with kind ``polygon`` or ``ellipse``
    (points = the bounding box corners); keypoints sit inside their part.
    """

    name: str
    parts: tuple[tuple[str, str, tuple[tuple[float, float], ...]], ...]
    keypoints: tuple[tuple[str, str, tuple[float, float]], ...]

    @property
    def part_names(self) -> list[str]:
        return [name for name, _, _ in self.parts]


CATEGORIES: tuple[Category, ...] = (
    Category(
        name="house",
        parts=(
            ("wall", "polygon", ((-0.35, -0.05), (0.35, -0.05), (0.35, 0.45), (-0.35, 0.45))),
            ("roof", "polygon", ((-0.45, -0.05), (0.0, -0.45), (0.45, -0.05))),
            ("chimney", "polygon", ((0.18, -0.38), (0.28, -0.38), (0.28, -0.15), (0.18, -0.15))),
            ("door", "polygon", ((-0.25, 0.15), (-0.08, 0.15), (-0.08, 0.45), (-0.25, 0.45))),
        ),
        keypoints=(
            ("roof-apex", "roof", (0.0, -0.38)),
            ("chimney-top", "chimney", (0.23, -0.35)),
            ("eave-left", "roof", (-0.36, -0.08)),
            ("base-right", "wall", (0.31, 0.41)),
            ("door-top", "door", (-0.165, 0.18)),
            ("base-left", "wall", (-0.31, 0.41)),
        ),
    ),
    Category(
        name="tree",
        parts=(
            ("trunk", "polygon", ((-0.07, 0.0), (0.07, 0.0), (0.1, 0.45), (-0.1, 0.45))),
            ("crown", "ellipse", ((-0.38, -0.45), (0.38, 0.12))),
            ("fruit", "ellipse", ((0.1, -0.1), (0.22, 0.02))),
        ),
        keypoints=(
            ("crown-top", "crown", (0.0, -0.4)),
            ("crown-left", "crown", (-0.33, -0.17)),
            ("crown-right", "crown", (0.33, -0.17)),
            ("fruit", "fruit", (0.16, -0.04)),
            ("trunk-base", "trunk", (0.0, 0.41)),
        ),
    ),
    Category(
        name="bottle",
        parts=(
            ("body", "polygon", ((-0.2, -0.1), (0.2, -0.1), (0.2, 0.45), (-0.2, 0.45))),
            ("neck", "polygon", ((-0.07, -0.35), (0.07, -0.35), (0.2, -0.1), (-0.2, -0.1))),
            ("cap", "polygon", ((-0.08, -0.45), (0.08, -0.45), (0.08, -0.35), (-0.08, -0.35))),
            ("label", "polygon", ((-0.2, 0.05), (0.2, 0.05), (0.2, 0.25), (-0.2, 0.25))),
        ),
        keypoints=(
            ("cap-top", "cap", (0.0, -0.42)),
            ("shoulder-left", "neck", (-0.15, -0.12)),
            ("shoulder-right", "neck", (0.15, -0.12)),
            ("label-centre", "label", (0.0, 0.15)),
            ("base-left", "body", (-0.16, 0.41)),
            ("base-right", "body", (0.16, 0.41)),
        ),
    ),
    Category(
        name="car",
        parts=(
            ("body", "polygon", ((-0.48, -0.05), (0.48, -0.05), (0.48, 0.2), (-0.48, 0.2))),
            ("cabin", "polygon", ((-0.3, -0.05), (-0.2, -0.28), (0.15, -0.28), (0.3, -0.05))),
            ("rear-wheel", "ellipse", ((-0.38, 0.08), (-0.16, 0.3))),
            ("front-wheel", "ellipse", ((0.16, 0.08), (0.38, 0.3))),
        ),
        keypoints=(
            ("roof-rear", "cabin", (-0.17, -0.25)),
            ("roof-front", "cabin", (0.13, -0.25)),
            ("rear-bumper", "body", (-0.45, 0.05)),
            ("front-bumper", "body", (0.45, 0.05)),
            ("rear-wheel", "rear-wheel", (-0.27, 0.19)),
            ("front-wheel", "front-wheel", (0.27, 0.19)),
        ),
    ),
)
_MAX_PARTS = max(len(c.parts) for c in CATEGORIES)


@dataclass(frozen=True)
class ShapeImage:
    """One rendered image with its ground truth.

    Attributes:
        image: H×W×3 uint8 RGB.
        category: the category name.
        keypoints: K×2 float array of (x, y) pixel coordinates, in the category's order.
        visible: K booleans (inside the image and not hidden by another part).
        keypoint_names: the K names.
        bbox: (x1, y1, x2, y2) of the object in pixels.
        parts: H×W int array: 0 background, i+1 for the category's part i.
        part_names: names of parts 1…P.
    """

    image: np.ndarray
    category: str
    keypoints: np.ndarray
    visible: np.ndarray
    keypoint_names: list[str]
    bbox: tuple[float, float, float, float]
    parts: np.ndarray
    part_names: list[str]


@dataclass(frozen=True)
class ShapePair:
    """Two different instances of one category, SPair-style."""

    source: ShapeImage
    target: ShapeImage
    source_index: int
    target_index: int


class ShapesDataset:
    """The images of one split: ``dataset[i]`` renders image ``i`` (deterministic, on demand).

    Args:
        split: ``train``, ``search`` or ``heldout``.
        size: image side in pixels.
        length: number of images in the split.
        seed: base seed; the default is the project's fixed one.

    Example:
        >>> item = ShapesDataset("search", size=64)[0]
        >>> item.image.shape, item.category, item.keypoint_names[0]
        ((64, 64, 3), 'house', 'roof-apex')
    """

    def __init__(self, split: str, size: int = 64, length: int = 1000, seed: int = 0) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split '{split}': use one of {', '.join(SPLITS)}")
        if size < 16:
            raise ValueError(f"image size {size} is too small: use at least 16 pixels")
        self.split, self.size, self.length, self.seed = split, size, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> ShapeImage:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} images")
        rng = np.random.default_rng(_seed(self.seed, self.split, index))
        return render(CATEGORIES[index % len(CATEGORIES)], rng, self.size)

    def category_of(self, index: int) -> str:
        """The category of image ``index`` (without rendering it)."""
        return CATEGORIES[index % len(CATEGORIES)].name

    def pairs(self, count: int, seed: int = 0) -> Iterator[ShapePair]:
        """``count`` same-category pairs of two different images, categories balanced, seeded."""
        rng = np.random.default_rng(_seed(seed, self.split, "pairs"))
        per_category = [list(range(c, self.length, len(CATEGORIES))) for c in range(len(CATEGORIES))]
        for number in range(count):
            members = per_category[number % len(CATEGORIES)]
            if len(members) < 2:
                raise ValueError(f"split '{self.split}' has fewer than 2 images of a category: use a longer split")
            first, second = rng.choice(len(members), size=2, replace=False)
            yield ShapePair(self[members[first]], self[members[second]], members[first], members[second])


def render(category: Category, rng: np.random.Generator, size: int) -> ShapeImage:
    """Draw one instance of ``category`` with random pose and appearance."""
    scale = rng.uniform(0.45, 0.8) * size
    aspect = math.exp(rng.uniform(-0.2, 0.2))
    angle = math.radians(rng.uniform(-20, 20))
    cos, sin = math.cos(angle), math.sin(angle)
    half_extent = 0.5 * scale * max(aspect, 1 / aspect) * 1.2
    margin = min(half_extent, size / 2 - 1)
    centre = rng.uniform(margin, size - margin, size=2)

    def to_pixels(points: np.ndarray) -> np.ndarray:
        x = points[:, 0] * scale * aspect
        y = points[:, 1] * scale / aspect
        return np.stack([cos * x - sin * y + centre[0], sin * x + cos * y + centre[1]], axis=1)

    labels = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(labels)
    for part_index, (_, kind, points) in enumerate(category.parts, start=1):
        corners = np.asarray(points, dtype=float)
        if kind == "ellipse":
            (x1, y1), (x2, y2) = corners
            theta = np.linspace(0, 2 * math.pi, 48, endpoint=False)
            corners = np.stack([(x1 + x2) / 2 + (x2 - x1) / 2 * np.cos(theta), (y1 + y2) / 2 + (y2 - y1) / 2 * np.sin(theta)], 1)
        draw.polygon([tuple(p) for p in to_pixels(corners)], fill=part_index)
    parts = np.asarray(labels, dtype=np.int64)

    keypoints = to_pixels(np.asarray([xy for _, _, xy in category.keypoints], dtype=float))
    part_ids = {name: i for i, name in enumerate(category.part_names, start=1)}
    visible = np.zeros(len(keypoints), dtype=bool)
    for k, (_, part, _) in enumerate(category.keypoints):
        snapped = _snap(parts, keypoints[k], part_ids[part])
        if snapped is not None:
            keypoints[k], visible[k] = snapped, True
    ys, xs = np.nonzero(parts)
    bbox = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    image = _paint(parts, len(category.parts), rng)
    return ShapeImage(
        image=image,
        category=category.name,
        keypoints=keypoints.astype(np.float32),
        visible=visible,
        keypoint_names=[name for name, _, _ in category.keypoints],
        bbox=bbox,
        parts=parts,
        part_names=category.part_names,
    )


def _snap(parts: np.ndarray, point: np.ndarray, label: int, radius: int = 2) -> np.ndarray | None:
    """The point itself if its pixel belongs to part ``label``, else the nearest such pixel
    within ``radius`` (small parts can fall between pixels); ``None`` if there is none."""
    size = parts.shape[0]
    x, y = int(round(point[0])), int(round(point[1]))
    best = None
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            px, py = x + dx, y + dy
            if 0 <= px < size and 0 <= py < size and parts[py, px] == label:
                distance = dx * dx + dy * dy
                if best is None or distance < best[0]:
                    best = (distance, px, py)
    if best is None:
        return None
    return point if best[0] == 0 else np.array([best[1], best[2]], dtype=float)


def _paint(parts: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Random background and per-part colours, each with a random stripe or noise texture."""
    size = parts.shape[0]
    yy, xx = np.mgrid[0:size, 0:size] / size
    canvas = np.empty((size, size, 3))
    for label in range(count + 1):
        base = rng.uniform(0, 1, 3)
        other = rng.uniform(0, 1, 3)
        frequency, direction = rng.uniform(2, 10), rng.uniform(0, math.pi)
        stripes = 0.5 + 0.5 * np.sin(2 * math.pi * frequency * (np.cos(direction) * xx + np.sin(direction) * yy))
        mix = stripes if rng.random() < 0.5 else rng.uniform(0, 1, (size, size))
        strength = rng.uniform(0.0, 0.5)
        texture = base + strength * (other - base) * mix[..., None]
        canvas[parts == label] = texture[parts == label]
    return (canvas.clip(0, 1) * 255).round().astype(np.uint8)


def _seed(base: int, split: str, index: int | str) -> int:
    digest = hashlib.sha256(f"autosel-shapes:{base}:{split}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little")
