"""Turning user images (paths, PIL images, tensors) into model-ready pixel tensors."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ImageInput = Union[str, Path, Image.Image, torch.Tensor]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


T = TypeVar("T")


def batches(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """``items`` in consecutive batches of at most ``size``, in order (the last may be shorter):
    the one batching rule of extraction, evaluation, screening and inspection, so the same
    batch size gives the same forwards everywhere."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def find_images(sources: Iterable[str | Path]) -> list[Path]:
    """Image files named by ``sources``: files as given, folders searched recursively (sorted).

    Raises:
        FileNotFoundError: a source does not exist.
    """
    found: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such image file or folder: {path}")
    return found


class ImageReadError(OSError):
    """An image file that cannot be decoded (unreadable, truncated, or a decompression bomb);
    the message names the file and the reason in one line."""


def read_rgb(path: str | Path) -> Image.Image:
    """The image at ``path`` decoded whole and converted to 8-bit RGB (see :func:`to_rgb`).

    Raises:
        ImageReadError: PIL cannot identify or fully decode the file, or it holds more pixels
            than PIL's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS`` × 2).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                opened.load()  # decode now: a truncated file fails here, not deep inside a batch
                return to_rgb(opened)
    except Image.DecompressionBombError as error:
        raise ImageReadError(f"{path}: refused as a decompression bomb ({error})".splitlines()[0]) from None
    except (OSError, SyntaxError, ValueError) as error:  # PIL's errors for unreadable or truncated data
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ImageReadError(f"{path}: not a readable image ({reason})") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of the image at ``path`` from its header (nothing decoded).

    Raises:
        ImageReadError: PIL cannot identify the file, or it is a decompression bomb.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                return opened.height, opened.width
    except Image.DecompressionBombError as error:
        raise ImageReadError(f"{path}: refused as a decompression bomb ({error})".splitlines()[0]) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"{path}: not a readable image ({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB: 16-bit and 32-bit grey are scaled to 0–255 (PIL's own
    conversion clips them, turning most pixels white); palette, alpha and other modes convert."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        grey = np.clip(np.rint(values / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def to_tensor(image: ImageInput) -> torch.Tensor:
    """One image as a float32 3×H×W tensor in [0, 1] (paths are decoded with :func:`read_rgb`).

    Raises:
        ImageReadError: the file cannot be read as an image.
        ValueError: a tensor that is not 3×H×W (or 1×3×H×W).
    """
    if isinstance(image, (str, Path)):
        image = read_rgb(image)
    if isinstance(image, Image.Image):
        array = np.asarray(to_rgb(image), dtype=np.float32) / 255.0
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()
    if isinstance(image, torch.Tensor):
        tensor = image[0] if image.ndim == 4 and image.shape[0] == 1 else image
        if tensor.ndim != 3 or tensor.shape[0] != 3:
            raise ValueError(f"an image tensor must be 3×H×W in [0, 1], got shape {tuple(image.shape)}")
        return tensor.detach().to("cpu", torch.float32)
    raise TypeError(f"unsupported image type {type(image).__name__}: use a path, a PIL image or a tensor")


def as_image_list(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    """Normalise a single image, a list, or a B×3×H×W batch tensor to a list of images."""
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return list(images)
    if isinstance(images, (str, Path, Image.Image, torch.Tensor)):
        return [images]
    return list(images)


def resize(pixels: torch.Tensor, size: tuple[int, int], policy: str) -> torch.Tensor:
    """Resize a 3×H×W image to ``size`` = (H, W): ``stretch``, or ``center-crop`` (keeps aspect)."""
    height, width = size
    batch = pixels.unsqueeze(0)
    if policy == "center-crop":
        scale = max(height / pixels.shape[1], width / pixels.shape[2])
        scaled = (math.ceil(pixels.shape[1] * scale), math.ceil(pixels.shape[2] * scale))
        batch = _interpolate(batch, scaled)
        top, left = (scaled[0] - height) // 2, (scaled[1] - width) // 2
        return batch[0, :, top : top + height, left : left + width]
    if policy != "stretch":
        raise ValueError(f"unknown resize policy '{policy}': use stretch or center-crop")
    return _interpolate(batch, (height, width))[0]


def _interpolate(batch: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(batch.shape[-2:]) == tuple(size):
        return batch
    return F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
