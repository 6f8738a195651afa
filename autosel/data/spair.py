"""SPair-71k as distributed, read into :class:`CorrespondenceData`.

Layout: ``JPEGImages/<category>/<name>.jpg``, ``PairAnnotation/{trn,val,test}/
<id>-<src>-<trg>:<category>.json`` (``src_imname``, ``trg_imname``, ``category``,
``src_imsize``/``trg_imsize`` = [width, height, 3], ``src_bndbox``/``trg_bndbox`` =
[x1, y1, x2, y2], ``src_kps``/``trg_kps`` = lists of [x, y]). Only the pair files a subset
needs are read; each is validated as it is read and a problem names the file.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from autosel.data.records import CorrespondenceData, KeypointPair
from autosel.errors import DatasetError, did_you_mean
from autosel.images import ImageReadError, image_size

SPAIR_SPLITS = ("trn", "val", "test")
_REQUIRED = ("src_imname", "trg_imname", "category", "src_imsize", "trg_imsize", "trg_bndbox", "src_kps", "trg_kps")


def load_spair(
    root: str | Path,
    split: str = "val",
    pairs_per_category: int | None = None,
    max_pairs: int | None = None,
    categories: list[str] | None = None,
    seed: int = 0,
) -> CorrespondenceData:
    """Pairs of one SPair-71k split, optionally a seeded per-category-balanced subset.

    Args:
        root: the SPair-71k folder (holding ``JPEGImages`` and ``PairAnnotation``).
        split: ``trn``, ``val`` or ``test``.
        pairs_per_category: keep at most this many pairs of each category (seeded choice).
        max_pairs: keep at most this many pairs in all, taken round-robin over categories.
        categories: only these categories (default: every category with pairs).
        seed: seed of the subset choice.

    Raises:
        DatasetError: missing folder or file, malformed annotation, keypoint outside its
            image, a category without pairs, or nothing left to score.
    """
    root = Path(root)
    if split not in SPAIR_SPLITS:
        raise DatasetError(f"unknown SPair-71k split '{split}':{did_you_mean(split, SPAIR_SPLITS)} use one of {', '.join(SPAIR_SPLITS)}")
    folder = root / "PairAnnotation" / split
    if not folder.is_dir():
        raise DatasetError(f"{folder}: pair annotation folder missing (expected SPair-71k's PairAnnotation/{split}/*.json)")
    by_category: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(folder.glob("*.json")):
        by_category[_category_of(path)].append(path)
    if not by_category:
        raise DatasetError(f"{folder}: no pair annotation files (*.json)")
    image_categories = sorted(p.name for p in (root / "JPEGImages").iterdir() if p.is_dir()) if (root / "JPEGImages").is_dir() else []
    wanted = list(categories) if categories else sorted(set(by_category) | set(image_categories))
    for category in wanted:
        if not by_category.get(category):
            known = sorted(by_category)
            raise DatasetError(
                f"{folder}: category '{category}' has no pairs in split '{split}'.{did_you_mean(category, known)}"
                f" Categories with pairs: {', '.join(known)}"
            )
    chosen = _balanced_subset({c: by_category[c] for c in wanted}, pairs_per_category, max_pairs, seed)
    images: list[Path] = []
    index_of: dict[Path, int] = {}
    sizes: dict[Path, tuple[int, int]] = {}
    pairs = []
    for path in chosen:
        record = _read_pair(path)
        ends = []
        for side in ("src", "trg"):
            image = root / "JPEGImages" / record["category"] / record[f"{side}_imname"]
            size = _image_size(image, path, sizes)
            width, height = int(record[f"{side}_imsize"][0]), int(record[f"{side}_imsize"][1])
            if (height, width) != size:
                raise DatasetError(f"{path}: {side}_imsize says {width}×{height} but {image.name} is {size[1]}×{size[0]}")
            if image not in index_of:
                index_of[image] = len(images)
                images.append(image)
            ends.append((index_of[image], size))
        source_points = _points(record, "src_kps", path, ends[0][1])
        target_points = _points(record, "trg_kps", path, ends[1][1])
        if len(source_points) != len(target_points):
            raise DatasetError(f"{path}: src_kps has {len(source_points)} points but trg_kps has {len(target_points)}")
        bbox = tuple(float(v) for v in record["trg_bndbox"])
        if len(bbox) != 4 or bbox[2] <= bbox[0] or bbox[3] <= bbox[1]:
            raise DatasetError(f"{path}: trg_bndbox must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1, got {record['trg_bndbox']}")
        pairs.append(
            KeypointPair(
                source=ends[0][0], target=ends[1][0], category=record["category"],
                source_points=source_points, target_points=target_points,
                visible=np.ones(len(source_points), dtype=bool),
                source_size=ends[0][1], target_size=ends[1][1], target_bbox=bbox, name=path.name,
            )
        )
    return CorrespondenceData(name=f"spair:{root}:{split}", images=images, pairs=pairs)


def _category_of(path: Path) -> str:
    """The category from the file name (``…:<category>.json``), else from the file itself."""
    if ":" in path.stem:
        return path.stem.rsplit(":", 1)[1]
    return str(_read_pair(path)["category"])


def _balanced_subset(
    by_category: dict[str, list[Path]], per_category: int | None, max_pairs: int | None, seed: int
) -> list[Path]:
    rng = np.random.default_rng(seed)
    picked: dict[str, list[Path]] = {}
    for category in sorted(by_category):
        files = by_category[category]
        if per_category is not None and per_category < len(files):
            order = np.sort(rng.choice(len(files), size=per_category, replace=False))
            files = [files[i] for i in order]
        picked[category] = files
    chosen: list[Path] = []
    depth = max(len(files) for files in picked.values())
    for rank in range(depth):  # round-robin, so a max_pairs cut stays balanced
        chosen.extend(files[rank] for files in picked.values() if rank < len(files))
    return chosen[:max_pairs] if max_pairs is not None else chosen


def _read_pair(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path}: not a readable pair annotation ({error})") from None
    if not isinstance(record, dict):
        raise DatasetError(f"{path}: a pair annotation must be a JSON object, got {type(record).__name__}")
    missing = [key for key in _REQUIRED if key not in record]
    if missing:
        raise DatasetError(f"{path}: pair annotation lacks {', '.join(missing)}")
    for key in ("src_imname", "trg_imname", "category"):
        if not isinstance(record[key], str) or not record[key] or "/" in record[key] or record[key] in (".", ".."):
            raise DatasetError(f"{path}: {key} must be a file or folder name, got {record[key]!r}")
    for key, length in (("src_imsize", (2, 3)), ("trg_imsize", (2, 3)), ("trg_bndbox", (4,))):
        if not _numbers(record[key], length):
            shape = "[width, height, 3]" if key.endswith("imsize") else "[x1, y1, x2, y2]"
            raise DatasetError(f"{path}: {key} must be {shape} (numbers), got {record[key]!r}")
    return record


def _numbers(value: object, lengths: tuple[int, ...]) -> bool:
    """``value`` is a list of finite numbers of one of ``lengths``."""
    if not isinstance(value, list) or len(value) not in lengths:
        return False
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in value)


def _image_size(image: Path, annotation: Path, cache: dict[Path, tuple[int, int]]) -> tuple[int, int]:
    if image not in cache:
        if not image.is_file():
            raise DatasetError(f"{annotation}: image {image} is missing")
        try:
            cache[image] = image_size(image)
        except ImageReadError as error:
            raise DatasetError(f"{annotation}: image {error}") from None
    return cache[image]


def _points(record: dict, key: str, path: Path, size: tuple[int, int]) -> np.ndarray:
    try:
        points = np.asarray(record[key], dtype=np.float32).reshape(-1, 2)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: {key} must be a list of [x, y] points") from None
    height, width = size
    for number, (x, y) in enumerate(points):
        if not (0 <= x <= width and 0 <= y <= height):
            raise DatasetError(f"{path}: {key}[{number}] = ({x:g}, {y:g}) is outside its {width}×{height} image")
    return points
