"""Turning user images (paths, PIL images, tensors) into model-ready pixel tensors."""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from autosel.errors import InvalidInputError

ImageInput = Union[str, Path, Image.Image, torch.Tensor]

def _readable_suffixes() -> tuple[str, ...]:
    """Every file suffix Pillow can open (``.gif``, ``.ppm``, ``.ico``… besides the common ones)."""
    Image.init()
    raster = {".apng", ".avif", ".dib", ".gif", ".ico", ".jfif", ".jp2", ".jpe", ".pbm", ".pcx", ".pgm", ".png", ".pnm",
              ".ppm", ".psd", ".qoi", ".sgi", ".tga"}  # pictures, not containers of other data (.h5, .mpeg, .ps)
    return tuple(sorted(suffix for suffix, kind in Image.registered_extensions().items() if kind in Image.OPEN and suffix in raster))


IMAGE_SUFFIXES = tuple(sorted({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", *_readable_suffixes()}))
"""Suffixes of the files an image folder is read for: every format Pillow opens (an animation's
first frame is read)."""

OUT_OF_RANGE = 0.5
"""How far outside [0, 1] a tensor's values may go before :func:`to_tensor` warns (once)."""

_warned_range = False


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
                return to_rgb(upright(opened))
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
                turned = opened.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8)  # a quarter turn swaps the sides
                return (opened.width, opened.height) if turned else (opened.height, opened.width)
    except Image.DecompressionBombError as error:
        raise ImageReadError(f"{path}: refused as a decompression bomb ({error})".splitlines()[0]) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"{path}: not a readable image ({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None


ORIENTATION = 0x0112
"""The EXIF tag of the orientation a viewer applies (phones store the sensor's pixels and this)."""


def upright(image: Image.Image) -> Image.Image:
    """``image`` as a viewer shows it: its EXIF orientation applied (a copy), else itself."""
    if image.getexif().get(ORIENTATION, 1) in (1, None):
        return image
    return ImageOps.exif_transpose(image)


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
        array = np.asarray(to_rgb(upright(image)), dtype=np.float32) / 255.0
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()
    if isinstance(image, torch.Tensor):
        tensor = image[0] if image.ndim == 4 and image.shape[0] == 1 else image
        if tensor.ndim != 3 or tensor.shape[0] != 3:
            raise ValueError(f"an image tensor must be 3×H×W in [0, 1], got shape {tuple(image.shape)}")
        return check_pixels(tensor.detach().to("cpu", torch.float32))
    raise TypeError(f"unsupported image type {type(image).__name__}: use a path, a PIL image or a tensor")


def check_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """``pixels`` if every value is finite; warns once per process when values lie far outside
    [0, 1] (e.g. a 0–255 tensor), which the model would read as a different picture.

    Raises:
        InvalidInputError: a NaN or infinite value.
    """
    global _warned_range
    if not bool(torch.isfinite(pixels).all()):
        raise InvalidInputError(f"an image tensor of shape {tuple(pixels.shape)} holds NaN or infinite values; pixels must be finite, in [0, 1]")
    low, high = float(pixels.min()), float(pixels.max())
    if not _warned_range and (low < -OUT_OF_RANGE or high > 1 + OUT_OF_RANGE):
        _warned_range = True
        warnings.warn(f"image tensor values span [{low:g}, {high:g}], far outside [0, 1] (a 0-255 tensor? divide it by 255); "
                      "they are used as given", UserWarning, stacklevel=3)
    return pixels


def as_image_list(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    """Normalise a single image, a list, or a B×3×H×W batch tensor to a list of images."""
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return list(images)
    if isinstance(images, (str, Path, Image.Image, torch.Tensor)):
        return [images]
    return list(images)


def resize(pixels: torch.Tensor, size: tuple[int, int], policy: str, resample: str = "bilinear") -> torch.Tensor:
    """Resize a 3×H×W image in [0, 1] to ``size`` = (H, W): ``stretch``, or ``center-crop`` (keeps aspect).

    ``resample``: ``bilinear`` (antialiased, on the float pixels) or ``bicubic`` (PIL's
    ``Image.BICUBIC`` on the pixels rounded to 8 bit, the result 8-bit too: what DIFT and gdf do
    to a PIL image).
    """
    if resample not in RESAMPLERS:
        raise ValueError(f"unknown resize filter '{resample}': use {' or '.join(RESAMPLERS)}")
    height, width = size
    if policy == "center-crop":
        scale = max(height / pixels.shape[1], width / pixels.shape[2])
        scaled = (math.ceil(pixels.shape[1] * scale), math.ceil(pixels.shape[2] * scale))
        resized = RESAMPLERS[resample](pixels, scaled)
        top, left = (scaled[0] - height) // 2, (scaled[1] - width) // 2
        return resized[:, top : top + height, left : left + width]
    if policy != "stretch":
        raise ValueError(f"unknown resize policy '{policy}': use stretch or center-crop")
    return RESAMPLERS[resample](pixels, (height, width))


def _bilinear(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(pixels.shape[-2:]) == tuple(size):
        return pixels
    return F.interpolate(pixels[None], size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)[0]


def _bicubic(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """PIL's bicubic resize of the 8-bit image (rounded even at the native size, as the peers' inputs are 8-bit)."""
    array = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(array)
    if (image.height, image.width) != tuple(size):
        image = image.resize((size[1], size[0]), Image.BICUBIC)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


RESAMPLERS = {"bilinear": _bilinear, "bicubic": _bicubic}
"""The resize filters of ``extraction.resize_filter``."""


def images_digest(images: Iterable[Any]) -> str:
    """A digest of a task's image list (paths by name, arrays by content)."""
    hasher = hashlib.sha256()
    for image in images:
        hasher.update(image.tobytes() if isinstance(image, np.ndarray) else str(image).encode())
    return hasher.hexdigest()[:24]
