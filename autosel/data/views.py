"""Seeded synthetic views of an image, with exact ground truth: the label-free proxy's pairs.

A view is the image under a random affine warp (rotation about the centre, scale, shift) and a
random photometric change; the warp's 3×3 matrix maps a source pixel (x, y) to where it lands in
the view, so any source point has a known match. Pixel coordinates follow the correspondence
task's convention: (x, y) is the centre of pixel column x, row y.

Everything is a pure function of its inputs and a NumPy generator: the same seed gives the same
views on every machine (warps are sampled in float64; pixels are rounded to uint8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from autosel.errors import InvalidInputError

PHOTOMETRIC = ("none", "mild", "hard")
"""Photometric changes: ``mild`` gamma, contrast and brightness jitter; ``hard`` the same wider
plus a random channel permutation (colours change as they do between instances of a category)."""

POINT_RULES = ("grid", "salient")
"""How source points are chosen: a regular ``grid``, or the most ``salient`` point (largest
intensity gradient) of each cell of a grid, the strongest cells kept."""


@dataclass(frozen=True)
class ViewRecipe:
    """How views are drawn.

    Attributes:
        rotation: largest rotation, in degrees either way.
        scale: scale drawn log-uniformly in [1/(1+scale), 1+scale].
        shift: largest shift, as a fraction of each side, either way.
        photometric: one of :data:`PHOTOMETRIC`.
    """

    rotation: float = 20.0
    scale: float = 0.15
    shift: float = 0.1
    photometric: str = "hard"

    def __post_init__(self) -> None:
        if self.photometric not in PHOTOMETRIC:
            raise InvalidInputError(f"photometric change '{self.photometric}' is unknown: use {', '.join(PHOTOMETRIC)}")
        for name in ("rotation", "scale", "shift"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise InvalidInputError(f"view {name} must be a finite number ≥ 0, got {value}")


@dataclass(frozen=True)
class View:
    """A synthetic view: its H×W×3 uint8 pixels and the 3×3 matrix taking source pixels to view pixels."""

    image: np.ndarray
    matrix: np.ndarray


def random_affine(height: int, width: int, recipe: ViewRecipe, rng: np.random.Generator) -> np.ndarray:
    """A 3×3 affine matrix: rotate and scale about the image centre, then shift."""
    angle = math.radians(rng.uniform(-recipe.rotation, recipe.rotation))
    scale = math.exp(rng.uniform(-math.log1p(recipe.scale), math.log1p(recipe.scale)))
    shift_x, shift_y = rng.uniform(-recipe.shift, recipe.shift, size=2) * (width, height)
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    cos, sin = scale * math.cos(angle), scale * math.sin(angle)
    return np.array([
        [cos, -sin, centre_x + shift_x - cos * centre_x + sin * centre_y],
        [sin, cos, centre_y + shift_y - sin * centre_x - cos * centre_y],
        [0.0, 0.0, 1.0],
    ])


def warp_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """K×2 (x, y) ``points`` mapped by the 3×3 ``matrix``."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def warp_image(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``image`` (H×W×3 uint8) warped by ``matrix`` into a frame of the same size, bilinearly;
    view pixels whose source lies outside the image take the image's mean colour."""
    height, width = image.shape[:2]
    rows, cols = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    source = warp_points(np.linalg.inv(matrix), np.stack([cols.ravel(), rows.ravel()], 1))
    grid = np.stack([(2 * source[:, 0] + 1) / width - 1, (2 * source[:, 1] + 1) / height - 1], 1)  # align_corners=False
    pixels = torch.from_numpy(image.astype(np.float64)).permute(2, 0, 1)
    channels = torch.cat([pixels, torch.ones(1, height, width, dtype=torch.float64)])[None]
    sampled = F.grid_sample(channels, torch.from_numpy(grid).view(1, height, width, 2), mode="bilinear",
                            padding_mode="zeros", align_corners=False)[0]
    coverage = sampled[3:]
    fill = pixels.mean(dim=(1, 2))[:, None, None]
    warped = sampled[:3] + (1 - coverage) * fill
    return warped.permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def photometric_change(image: np.ndarray, strength: str, rng: np.random.Generator) -> np.ndarray:
    """``image`` (H×W×3 uint8) with a random gamma, contrast and brightness change (and, for
    ``hard``, its channels permuted); ``none`` returns it unchanged."""
    if strength == "none":
        return image
    spread = {"mild": (0.15, 0.1, 0.05), "hard": (0.5, 0.3, 0.1)}[strength]
    gamma = math.exp(rng.uniform(-spread[0], spread[0]))
    contrast = 1 + rng.uniform(-spread[1], spread[1])
    brightness = rng.uniform(-spread[2], spread[2])
    values = (image.astype(np.float64) / 255.0) ** gamma
    values = (values - values.mean()) * contrast + values.mean() + brightness
    if strength == "hard":
        orders = [(0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]  # every permutation but the identity
        values = values[..., list(orders[int(rng.integers(len(orders)))])]
    return np.clip(np.round(values * 255.0), 0, 255).astype(np.uint8)


def make_view(image: np.ndarray, recipe: ViewRecipe, rng: np.random.Generator) -> View:
    """One seeded view of ``image`` (see the module docstring)."""
    matrix = random_affine(image.shape[0], image.shape[1], recipe, rng)
    warped = warp_image(image, matrix)
    return View(photometric_change(warped, recipe.photometric, rng), matrix)


def select_points(image: np.ndarray, count: int, rule: str = "salient", margin: float = 0.05) -> np.ndarray:
    """``count`` K×2 (x, y) source points of ``image`` by ``rule`` (see :data:`POINT_RULES`),
    at least ``margin`` × each side from the border.

    Raises:
        InvalidInputError: an unknown rule or a count below 1.
    """
    if rule not in POINT_RULES:
        raise InvalidInputError(f"point rule '{rule}' is unknown: use {', '.join(POINT_RULES)}")
    if count < 1:
        raise InvalidInputError(f"point count must be at least 1, got {count}")
    height, width = image.shape[:2]
    cells = math.ceil(math.sqrt(count if rule == "grid" else 2 * count))
    top, left = margin * (height - 1), margin * (width - 1)
    row_edges = np.linspace(top, height - 1 - top, cells + 1)
    col_edges = np.linspace(left, width - 1 - left, cells + 1)
    if rule == "grid":
        rows, cols = (row_edges[:-1] + row_edges[1:]) / 2, (col_edges[:-1] + col_edges[1:]) / 2
        grid = np.stack(np.meshgrid(cols, rows, indexing="xy"), -1).reshape(-1, 2)
        return grid[:count]
    saliency = gradient_magnitude(image)
    found = []  # (saliency, x, y) of each cell's strongest pixel
    for r in range(cells):
        for c in range(cells):
            y0, y1 = math.ceil(row_edges[r]), max(math.ceil(row_edges[r]) + 1, math.floor(row_edges[r + 1]))
            x0, x1 = math.ceil(col_edges[c]), max(math.ceil(col_edges[c]) + 1, math.floor(col_edges[c + 1]))
            block = saliency[y0:y1, x0:x1]
            if block.size == 0:
                continue
            best = int(np.argmax(block))  # the first of equal values: no rounding decides
            found.append((float(block.flat[best]), x0 + best % block.shape[1], y0 + best // block.shape[1]))
    order = sorted(range(len(found)), key=lambda i: -found[i][0])[:count]  # stable: ties keep cell order
    return np.array([[found[i][1], found[i][2]] for i in sorted(order)], dtype=np.float64).reshape(-1, 2)


def gradient_magnitude(image: np.ndarray) -> np.ndarray:
    """H×W squared magnitude of the central-difference gradient of the grey image, after a 3×3
    box blur (float64 sums and products only: the same values on every machine)."""
    grey = np.asarray(image, dtype=np.float64).mean(axis=2)
    padded = np.pad(grey, 1, mode="edge")
    blurred = sum(padded[1 + dy : 1 + dy + grey.shape[0], 1 + dx : 1 + dx + grey.shape[1]]
                  for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9.0
    padded = np.pad(blurred, 1, mode="edge")
    gx = padded[1:-1, 2:] - padded[1:-1, :-2]
    gy = padded[2:, 1:-1] - padded[:-2, 1:-1]
    return gx * gx + gy * gy


def inside(points: np.ndarray, size: tuple[int, int], margin: float = 0.0) -> np.ndarray:
    """K booleans: each (x, y) lies in an image of ``size`` = (height, width), ``margin`` pixels in."""
    height, width = size
    x, y = points[:, 0], points[:, 1]
    return (x >= margin) & (x <= width - 1 - margin) & (y >= margin) & (y <= height - 1 - margin)
