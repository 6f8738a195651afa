"""The activation cache: features of every image of a split for chosen (id, timestep) pairs.

Each entry is one N×C×H×W float16 array (N images in the task's order) at a proxy
resolution (maps larger than ``resolution`` cells per side are average-pooled down), optionally
reduced to at most D channels by a seeded Gaussian random projection (C→D, entries
N(0, 1/D)): by the Johnson–Lindenstrauss property it preserves inner products and so cosine
similarities approximately — what both proxy tasks consume — not individual channels.

Entries live on disk (``<digest>.npy`` + ``<digest>.json``) so that reruns and other
processes reuse them; the key digest covers everything that changes the values. Arrays are
written under a ``.partial`` name and renamed, and the JSON (written last, also atomically)
is the commit mark: a writer killed at any point leaves nothing that reads back as valid.
Within ``memory_budget`` entries are also held in RAM; beyond it they are memory-mapped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from autosel.errors import InvalidInputError

CACHE_VERSION = 1


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


@dataclass
class ActivationCache:
    """Disk-backed cache of proxy-resolution activations with an in-memory budget."""

    root: Path = field(default_factory=default_cache_dir)
    memory_budget: int = 4 * 10**9
    _resident: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).expanduser()
        self.memory_budget = parse_bytes(self.memory_budget)

    @property
    def resident_bytes(self) -> int:
        return sum(array.nbytes for array in self._resident.values())

    def get(self, key: CacheKey) -> np.ndarray | None:
        """The committed array of ``key`` (in RAM or memory-mapped), or ``None``."""
        digest = key.digest
        if digest in self._resident:
            return self._resident[digest]
        meta, data = self._paths(digest)
        if not meta.is_file() or not data.is_file():
            return None
        try:
            info = json.loads(meta.read_text())
            array = np.load(data, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return None
        if list(array.shape) != info.get("shape") or info.get("key") != _plain(key):
            return None
        return self._hold(digest, array)

    def create(self, key: CacheKey, shape: tuple[int, ...]) -> CacheEntryWriter:
        """A float16 memory-mapped array to fill; commit it to make the entry valid."""
        self.root.mkdir(parents=True, exist_ok=True)
        partial = self.root / f"{key.digest}.{os.getpid()}.partial.npy"
        array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=shape)
        return CacheEntryWriter(self, key, array, partial)

    def put(self, key: CacheKey, array: np.ndarray) -> np.ndarray:
        """Store a whole N×C×H×W array (cast to float16)."""
        writer = self.create(key, tuple(array.shape))
        writer.array[...] = array.astype(np.float16)
        return writer.commit()

    def entries(self) -> list[dict[str, Any]]:
        """Committed entries: key fields, shape and bytes on disk."""
        found = []
        for meta in sorted(self.root.glob("*.json")) if self.root.is_dir() else []:
            try:
                info = json.loads(meta.read_text())
            except (OSError, ValueError):
                continue
            data = meta.with_suffix(".npy")
            if data.is_file():
                found.append({**info["key"], "shape": info["shape"], "bytes": data.stat().st_size, "digest": meta.stem})
        return found

    def clear(self, model: str | None = None) -> int:
        """Delete entries (of ``model`` only, if given) and any leftover partial files; returns
        how many entries were deleted."""
        deleted = 0
        for entry in self.entries():
            if model is None or entry["model"] == model:
                for path in self._paths(entry["digest"]):
                    path.unlink(missing_ok=True)
                self._resident.pop(entry["digest"], None)
                deleted += 1
        if model is None and self.root.is_dir():
            for leftover in self.root.glob("*.partial.npy"):
                leftover.unlink(missing_ok=True)
            for orphan in self.root.glob("*.npy"):
                if not orphan.with_suffix(".json").exists():
                    orphan.unlink(missing_ok=True)
        return deleted

    def _commit(self, key: CacheKey, partial: Path, shape: tuple[int, ...]) -> np.ndarray:
        meta, data = self._paths(key.digest)
        os.replace(partial, data)
        temporary = meta.with_name(meta.name + f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"key": _plain(key), "shape": list(shape), "dtype": "float16"}))
        os.replace(temporary, meta)
        return self._hold(key.digest, np.load(data, mmap_mode="r", allow_pickle=False))

    def _hold(self, digest: str, mapped: np.ndarray) -> np.ndarray:
        if self.resident_bytes + mapped.nbytes <= self.memory_budget:
            self._resident[digest] = np.array(mapped)  # read into RAM
            return self._resident[digest]
        return mapped  # over budget: stays memory-mapped on disk

    def _paths(self, digest: str) -> tuple[Path, Path]:
        return self.root / f"{digest}.json", self.root / f"{digest}.npy"


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


def images_digest(images: Iterable[Any]) -> str:
    """A digest of a task's image list (paths by name, arrays by content)."""
    hasher = hashlib.sha256()
    for image in images:
        hasher.update(image.tobytes() if isinstance(image, np.ndarray) else str(image).encode())
    return hasher.hexdigest()[:24]
