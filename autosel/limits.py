"""Limits every input passes before anything is allocated or written: image sizes against the
memory of the device that would hold them, text fields, and study names used in paths.

Each check raises one :class:`~autosel.errors.InvalidInputError` line naming the value and
what would be valid.
"""

from __future__ import annotations

import os
import re

from autosel.errors import InvalidInputError

MAX_TEXT_CHARS = 10_000
"""The longest text field (a prompt) a config or space accepts: far above any text encoder's
context, far below what would be copied into every output's metadata by the megabyte."""

BYTES_PER_PIXEL = 12 + 128 * 4
"""A lower bound of the memory one image pixel needs on its way through a model: the float32
RGB tensor (12 bytes) and the VAE encoder's first feature map (128 float32 channels at full
resolution); the denoiser's activations come on top."""

STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+=-]{0,199}")


def device_memory_bytes(device: str | None = None) -> int:
    """The memory of ``device`` (a CUDA device's total, else the machine's physical RAM)."""
    import torch

    if (device or "").startswith("cuda") or (device is None and torch.cuda.is_available()):
        index = torch.device(device or "cuda").index or 0
        return int(torch.cuda.get_device_properties(index).total_memory)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def image_memory_bytes(size: int | tuple[int, int], batch_size: int = 1) -> int:
    """The lower bound of the memory a batch of ``batch_size`` images of ``size`` needs (see
    :data:`BYTES_PER_PIXEL`), in exact integers: no size overflows."""
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return batch_size * height * width * BYTES_PER_PIXEL


def check_image_memory(size: int | tuple[int, int] | None, device: str | None = None, batch_size: int = 1,
                       what: str = "image_size") -> None:
    """Refuse an image size whose batch cannot fit in the device's memory, before any allocation.

    Raises:
        InvalidInputError: naming the size, the estimate and what the device has.
    """
    if size is None:
        return
    need, have = image_memory_bytes(size, batch_size), device_memory_bytes(device)
    if need > have:
        shown = f"{size}" if isinstance(size, int) else f"{size[0]}x{size[1]}"
        raise InvalidInputError(
            f"{what} {shown} needs at least {_gib(need)} for a batch of {batch_size} image(s), more than the "
            f"{_gib(have)} this device ({device or 'default'}) has: use a smaller size (the model's native size is the default)"
        )


def check_study_name(name: str | None, option: str = "--study") -> str | None:
    """``name`` if it is safe as a file name (letters, digits, ``._@+=-``, not starting with a dot).

    Raises:
        InvalidInputError: a name with a path separator, ``..``, a leading dot or other characters.
    """
    if name is None or STUDY_NAME.fullmatch(name):
        return name
    raise InvalidInputError(
        f"{option} {name!r} is not a valid study name: use letters, digits and . _ @ + = - (no '/', no leading '.'), "
        "at most 200 characters, e.g. tiny-correspondence"
    )


def _gib(value: int) -> str:
    return f"{value / 2**30:,.1f} GiB"
