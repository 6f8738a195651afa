"""Any folder of plain images, without annotations: the data of the label-free proxy.

The folder is searched recursively for every format Pillow reads (:data:`autosel.images.IMAGE_SUFFIXES`),
any size and mode (greyscale, RGBA, palette, CMYK JPEG, 16-bit grey: all become 8-bit RGB, EXIF
orientation applied). Files that cannot be read are listed once per process and skipped.

Roles: in sorted path order, images alternate between ``search`` (0, 2, 4, …) and ``heldout``
(1, 3, 5, …), so a folder sorted by subfolder gives both roles every subfolder. A role limited
to ``count`` images takes them evenly spaced over its list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from autosel.errors import DatasetError
from autosel.images import ImageReadError, find_images, image_size, read_rgb
from autosel.log import logger

MAX_SIDE = 512
"""Images are scaled down (never up) to at most this many pixels on their longer side when
read: the proxy's views are built at this size, and a real-size photo need not stay in memory."""

_reported: set[str] = set()  # unreadable files already listed in this process


@dataclass
class ImageSet:
    """Plain images of one role: H×W×3 uint8 arrays, and the files skipped as unreadable."""

    name: str
    images: list[np.ndarray]
    skipped: list[str] = field(default_factory=list)


def load_image_folder(root: str | Path, role: str, count: int | None = None, max_side: int = MAX_SIDE) -> ImageSet:
    """The readable images of ``role`` (``search`` or ``heldout``) under ``root``.

    Args:
        root: a folder, searched recursively.
        role: ``search`` (even positions in sorted order) or ``heldout`` (odd positions).
        count: at most this many images, evenly spaced over the role's list.
        max_side: longer side, in pixels, larger images are scaled down to.

    Raises:
        DatasetError: no such folder, or fewer than two readable images (each role needs one).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such image folder (images:PATH takes a folder of image files)")
    readable, skipped = [], []
    for path in find_images([root]):
        try:
            image_size(path)
            readable.append(path)
        except ImageReadError as error:
            skipped.append(str(error))
    if len(readable) < 2:
        raise DatasetError(f"{root}: {len(readable)} readable image file(s), need at least 2 (one for the search, one "
                           "for the held-out role; any format Pillow reads: .png, .jpg, .tif, .webp, …)")
    chosen = readable[0::2] if role == "search" else readable[1::2]
    if count is not None and count < len(chosen):
        chosen = [chosen[int(i)] for i in np.linspace(0, len(chosen) - 1, count).round()]
    images = []
    for path in chosen:
        try:
            images.append(shrink(np.array(read_rgb(path)), max_side))
        except ImageReadError as error:  # the header read but the pixels do not (a truncated file)
            skipped.append(str(error))
    report_unreadable(root, skipped)
    if not images:
        raise DatasetError(f"{root}: none of the {len(chosen)} images of the '{role}' role can be decoded")
    return ImageSet(name=f"images:{root} ({role})", images=images, skipped=skipped)


def shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` scaled down so that its longer side is at most ``max_side`` (aspect kept)."""
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.array(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))


def report_unreadable(root: Path, skipped: list[str]) -> None:
    """Log the unreadable files not yet listed in this process, in one message."""
    new = [line for line in skipped if line not in _reported]
    if not new:
        return
    _reported.update(new)
    logger.warning(f"images:{root}: skipped {len(new)} unreadable file(s): " + "; ".join(new))
