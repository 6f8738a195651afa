"""The activation cache: features of every image of a split for chosen (id, timestep) pairs.

Each entry is one N×C×H×W float16 array (N images in the task's order) at a proxy
resolution (maps larger than ``resolution`` cells per side are average-pooled down), optionally
reduced to at most D channels by a seeded Gaussian random projection (C→D, entries
N(0, 1/D)): by the Johnson–Lindenstrauss property it preserves inner products and so cosine
similarities approximately — what both proxy tasks consume — not individual channels.

Entries live on disk (``<digest>.npy`` + ``<digest>.json``) so that reruns and other
processes reuse them; the key digest covers everything that changes the values. Arrays are
written under a ``.partial`` name and renamed, and the JSON (written last, also atomically)
is the commit mark: a writer killed at any point leaves nothing that reads back as valid. The
JSON holds the SHA-256 of the ``.npy`` file; every load verifies it, so bytes changed on disk
(same size, a bad sector, a stray write) are reported and the entry recomputed, never used.
Within ``memory_budget`` entries are also held in RAM; beyond it they are memory-mapped.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from autosel.errors import AutoselError, InvalidInputError

CACHE_VERSION = 1
ENTRY_STATES = ("ok", "unverified", "corrupt", "incomplete")
"""ok: checksum matches (or, without verifying, the files are whole); unverified: an entry
written before checksums (used as it is); corrupt: unreadable JSON, a wrong shape or size, or a
checksum mismatch; incomplete: an array without its JSON, a JSON without its array, or a
``.partial`` file of an interrupted writer."""

log = logging.getLogger("autosel.cache")


class CacheWriteError(AutoselError):
    """The cache folder cannot take an entry (read-only, missing, or full); nothing partial is left."""


def default_cache_dir() -> Path:
    """``$AUTOSEL_CACHE_DIR``, else ``$XDG_CACHE_HOME/autosel/activations`` (``~/.cache/…``)."""
    if os.environ.get("AUTOSEL_CACHE_DIR"):
        return Path(os.environ["AUTOSEL_CACHE_DIR"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "autosel" / "activations"


def parse_bytes(text: str | int) -> int:
    """``4GB``, ``512MiB``, ``1e9`` or an int → bytes.

    Raises:
        InvalidInputError: not a size.
    """
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([KMGT]?)(i?)B?\s*", text, flags=re.IGNORECASE)
    if not match:
        raise InvalidInputError(f"'{text}' is not a size: use e.g. 4GB, 512MB or a number of bytes")
    number, unit, binary = float(match.group(1)), match.group(2).upper(), match.group(3)
    base = 1024 if binary else 1000
    return int(number * base ** " KMGT".index(unit or " "))


@dataclass(frozen=True)
class CacheKey:
    """Everything that changes a cached array's values."""

    model: str
    revision: str | None
    activation: str
    timestep: int
    dataset: str
    role: str
    images: str  # the task's image list, as a digest (split, proxy size, pair sampling seed)
    image_size: int | tuple[int, int] | None
    resolution: int
    projection: int | None
    seed: int
    extraction: str = ""  # prompt, noise seed, ensemble
    version: int = CACHE_VERSION

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=str).encode()).hexdigest()[:40]


@dataclass
class CacheEntryWriter:
    """An entry being filled image by image; invisible to readers until :meth:`commit`."""

    cache: ActivationCache
    key: CacheKey
    array: np.memmap
    partial: Path

    def commit(self) -> np.ndarray:
        self.array.flush()
        shape = tuple(self.array.shape)
        del self.array
        return self.cache._commit(self.key, self.partial, shape)

    def discard(self) -> None:
        """Drop the entry being written (its partial file goes too)."""
        self.array = None  # type: ignore[assignment] - unmaps before the file is removed
        self.partial.unlink(missing_ok=True)


DEFAULT_MEMORY_BUDGET = 4 * 10**9
"""Bytes of cached activations a worker holds in RAM (``--cache-memory 4GB``); beyond it they are memory-mapped."""


@dataclass
class ActivationCache:
    """Disk-backed cache of proxy-resolution activations with an in-memory budget."""

    root: Path = field(default_factory=default_cache_dir)
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    _resident: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).expanduser()
        self.memory_budget = parse_bytes(self.memory_budget)

    @property
    def resident_bytes(self) -> int:
        return sum(array.nbytes for array in self._resident.values())

    def holds(self, key: CacheKey) -> bool:
        """Whether ``key``'s entry was committed (its files exist; not read nor verified: what
        a plan counts, while :meth:`get` checks the data)."""
        return all(path.is_file() for path in self._paths(key.digest))

    def get(self, key: CacheKey) -> np.ndarray | None:
        """The committed array of ``key`` (in RAM or memory-mapped), or ``None``."""
        digest = key.digest
        if digest in self._resident:
            return self._resident[digest]
        meta, data = self._paths(digest)
        if not meta.is_file() or not data.is_file():
            return None
        state, reason, array = self._check(digest, verify=True)
        if state in ("corrupt", "incomplete") or array is None:
            log.warning("cache entry %s (%s @ t=%s) is %s: %s; it is recomputed", digest, key.activation, key.timestep, state, reason)
            return None
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            return None
        if info.get("key") != _plain(key):
            return None  # a digest collision or another version's entry: not ours
        return self._hold(digest, array)

    def _check(self, digest: str, verify: bool) -> tuple[str, str, np.ndarray | None]:
        """(state, reason, memory-mapped array or None) of the entry ``digest``."""
        meta, data = self._paths(digest)
        if not data.is_file():
            return "incomplete", "its .npy array is missing", None
        if not meta.is_file():
            return "incomplete", "its .json record is missing", None
        try:
            info = json.loads(meta.read_text())
            shape = list(info["shape"])
        except (OSError, ValueError, KeyError, TypeError):
            return "corrupt", "its .json record is unreadable", None
        try:
            array = np.load(data, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as error:
            return "corrupt", f"its array is unreadable ({str(error).splitlines()[0]})", None
        if list(array.shape) != shape:
            return "corrupt", f"its array is {list(array.shape)}, the record says {shape}", None
        expected = info.get("sha256")
        if expected is None:
            return "unverified", "written without a checksum", array
        if verify and _file_sha256(data) != expected:
            return "corrupt", "its array's checksum does not match (the file changed after it was written)", None
        return "ok", "", array

    def create(self, key: CacheKey, shape: tuple[int, ...]) -> CacheEntryWriter:
        """A float16 memory-mapped array to fill; commit it to make the entry valid.

        The file's blocks are allocated up front, so a full disk fails here with a clean error
        instead of killing the process with SIGBUS on a write into the mapping.

        Raises:
            CacheWriteError: the folder cannot be created or written, or has no room.
        """
        partial = self.root / f"{key.digest}.{os.getpid()}.partial.npy"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=shape)
            with open(partial, "r+b") as handle:
                _allocate(handle.fileno(), os.path.getsize(partial))
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise self._write_error(error) from None
        return CacheEntryWriter(self, key, array, partial)

    def _write_error(self, error: OSError) -> CacheWriteError:
        reason = "no space left on the device" if error.errno == errno.ENOSPC else (error.strerror or str(error))
        return CacheWriteError(f"cannot write to the activation cache {self.root}: {reason} (choose another with --cache-dir)")

    def put(self, key: CacheKey, array: np.ndarray) -> np.ndarray:
        """Store a whole N×C×H×W array (cast to float16)."""
        writer = self.create(key, tuple(array.shape))
        writer.array[...] = array.astype(np.float16)
        return writer.commit()

    def entries(self, verify: bool = False) -> list[dict[str, Any]]:
        """Every entry on disk with its ``state`` (see :data:`ENTRY_STATES`) and ``reason``:
        key fields (where readable), shape, bytes of all its files, digest. ``verify`` reads
        every array to check its checksum (otherwise only the files' structure is checked)."""
        if not self.root.is_dir():
            return []
        digests = {path.name.split(".", 1)[0] for path in self._owned_files()}
        found = []
        for digest in sorted(digests):
            state, reason, _ = self._check(digest, verify)
            files = list(self.root.glob(f"{digest}.*"))
            partials = [f for f in files if f.name.endswith((".partial.npy", ".tmp"))]
            if partials and state == "incomplete" and not self._paths(digest)[0].exists():
                reason = "an interrupted writer's partial file"
            record: dict[str, Any] = {"digest": digest, "state": state, "reason": reason,
                                      "bytes": sum(f.stat().st_size for f in files if f.is_file())}
            try:
                info = json.loads(self._paths(digest)[0].read_text())
                record.update({**info["key"], "shape": info["shape"]})
            except (OSError, ValueError, KeyError, TypeError):
                record.update({"shape": None})
            found.append(record)
        return found

    def clear(self, model: str | None = None, broken_only: bool = False) -> int:
        """Delete entries (of ``model`` only, if given; only corrupt or incomplete ones with
        ``broken_only``) with every file they own, partial and temporary files included;
        returns how many entries were deleted."""
        deleted = 0
        for entry in self.entries(verify=broken_only):
            if model is not None and entry.get("model") != model:
                continue
            if broken_only and entry["state"] in ("ok", "unverified"):
                continue
            for path in self.root.glob(f"{entry['digest']}.*"):
                path.unlink(missing_ok=True)
            self._resident.pop(entry["digest"], None)
            deleted += 1
        return deleted

    def _owned_files(self) -> list[Path]:
        """Files this cache wrote: ``<40 hex digits>.json|.npy|.<pid>.partial.npy|.json.<pid>.tmp``."""
        return [path for path in self.root.iterdir() if path.is_file() and _OWNED.fullmatch(path.name)]

    def _commit(self, key: CacheKey, partial: Path, shape: tuple[int, ...]) -> np.ndarray:
        meta, data = self._paths(key.digest)
        temporary = meta.with_name(meta.name + f".{os.getpid()}.tmp")
        try:
            checksum = _file_sha256(partial)
            os.replace(partial, data)
            record = {"key": _plain(key), "shape": list(shape), "dtype": "float16", "sha256": checksum}
            temporary.write_text(json.dumps(record))
            os.replace(temporary, meta)
        except OSError as error:
            for leftover in (partial, temporary):
                leftover.unlink(missing_ok=True)
            raise self._write_error(error) from None
        return self._hold(key.digest, np.load(data, mmap_mode="r", allow_pickle=False))

    def _hold(self, digest: str, mapped: np.ndarray) -> np.ndarray:
        if self.resident_bytes + mapped.nbytes <= self.memory_budget:
            self._resident[digest] = np.array(mapped)  # read into RAM
            return self._resident[digest]
        return mapped  # over budget: stays memory-mapped on disk

    def _paths(self, digest: str) -> tuple[Path, Path]:
        return self.root / f"{digest}.json", self.root / f"{digest}.npy"


_OWNED = re.compile(r"[0-9a-f]{40}\.(json|npy|\d+\.partial\.npy|json\.\d+\.tmp)")


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _allocate(fd: int, size: int) -> None:
    """Reserve ``size`` bytes of disk for the file (where the platform can)."""
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as error:
            if error.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                return  # a filesystem without fallocate: writes find out instead
            raise


def _plain(key: CacheKey) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(key), default=str))


def proxy_map(value: torch.Tensor, resolution: int) -> torch.Tensor:
    """B×C×H×W maps average-pooled so that neither side exceeds ``resolution`` cells."""
    height, width = value.shape[-2:]
    if height <= resolution and width <= resolution:
        return value
    return F.adaptive_avg_pool2d(value.float(), (min(height, resolution), min(width, resolution)))


def projection_matrix(channels: int, dim: int, seed: int, activation: str) -> torch.Tensor:
    """The seeded C×D Gaussian projection (entries N(0, 1/D)) of one activation."""
    digest = hashlib.sha256(f"autosel-projection:{seed}:{activation}:{channels}:{dim}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    return torch.randn(channels, dim, generator=generator) / dim**0.5


def project(value: torch.Tensor, dim: int | None, seed: int, activation: str) -> torch.Tensor:
    """B×C×H×W → B×D×H×W by :func:`projection_matrix` when C > D (else unchanged)."""
    if dim is None or value.shape[1] <= dim:
        return value
    matrix = projection_matrix(value.shape[1], dim, seed, activation).to(value.device)
    return torch.einsum("bchw,cd->bdhw", value.float(), matrix)
