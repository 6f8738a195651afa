"""Writing a file whole or not at all: every file autosel writes goes to a temporary name in
its folder, is flushed to the disk, takes the permissions the umask gives, and is renamed over
the target; a failure leaves the previous file as it was and no temporary file behind. A full
disk is one :class:`DiskFullError` line naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from autosel.errors import AutoselError


class DiskFullError(AutoselError, OSError):
    """No space was left on the device while autosel wrote a file (the previous file is kept)."""


def is_disk_full(error: BaseException) -> bool:
    """True for ENOSPC, also when a library wraps it in its own error (safetensors' IoError text)."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    return "No space left on device" in text or "StorageFull" in text or "code: 28," in text


def disk_full(path: str | Path, option: str = "--out") -> DiskFullError:
    """The one line for a full disk while writing ``path``."""
    return DiskFullError(f"no space left on the device of {Path(path).parent} while writing {path}: "
                         f"free some space or choose another folder with {option}; the previous file, if any, is unchanged")


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` less the process umask: the permissions ``open()`` would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


@contextlib.contextmanager
def replacing(path: str | Path, option: str = "--out") -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffix) to write; on success it is flushed,
    given the umask's permissions and renamed to ``path``; on any error it is removed.

    Raises:
        DiskFullError: the device is full (instead of the OSError or the library's error).
    """
    target = Path(path)
    temporary = target.with_name(f".{target.stem}.partial-{os.getpid()}{target.suffix}")
    try:
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())  # a full disk can surface only here (delayed allocation)
        os.chmod(temporary, umask_mode())
        os.replace(temporary, target)
    except BaseException as error:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        if is_disk_full(error) and not isinstance(error, DiskFullError):
            raise disk_full(target, option) from None
        raise


def write_text(path: str | Path, text: str, option: str = "--out") -> Path:
    """Write ``text`` to ``path`` whole or not at all (see :func:`replacing`)."""
    with replacing(path, option) as temporary:
        temporary.write_text(text)
    return Path(path)


def write_with(path: str | Path, write: Callable[[Path], object], option: str = "--out") -> Path:
    """Call ``write(temporary)`` and put its file at ``path`` whole or not at all (see :func:`replacing`)."""
    with replacing(path, option) as temporary:
        write(temporary)
    return Path(path)
