"""Label-scarce segmentation data as image + integer label files with the same stem.

Accepted layouts under ``PATH`` (the DatasetGAN / ddpm-segmentation conventions):

- ``images/`` and ``labels/`` (or ``masks/``): ``images/x.jpg`` ↔ ``labels/x.png`` or ``x.npy``;
- ``train/`` and ``test/`` subfolders, each holding ``x.png`` + ``x.npy`` pairs or the layout above;
- a flat folder of ``x.<image>`` + ``x.npy`` pairs.

Split: ``train/`` + ``test/`` subfolders, else the list files ``train.txt`` (and optionally
``test.txt``: stems, one per line), else the first ``train_count`` stems in sorted order.
Class names come from ``classes.txt`` (one per line, line i = label i) when present.
Label PNGs are read as palette indices or grey values; ``.npy`` labels with
``allow_pickle=False``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from autosel.data.records import SegmentationData, read_label
from autosel.errors import DatasetError
from autosel.images import IMAGE_SUFFIXES, ImageReadError, image_size

LABEL_FOLDERS = ("labels", "masks")


def load_folder(
    root: str | Path, train_count: int | None = None, ignore_index: int | None = 255
) -> SegmentationData:
    """All labelled images under ``root``, split into ``train`` and ``test``.

    Raises:
        DatasetError: no such folder, an image without a label (or the reverse), a label
            whose size differs from its image, a label value outside ``classes.txt``, an
            unknown stem in a list file, or an empty split.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such segmentation folder")
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_items, test_items = _pairs_in(root / "train"), _pairs_in(root / "test")
    else:
        items = _pairs_in(root)
        train_items, test_items = _split(root, items, train_count)
    for name, chosen in (("train", train_items), ("test", test_items)):
        if not chosen:
            raise DatasetError(f"{root}: the {name} split is empty ({len(train_items)} train, {len(test_items)} test images)")
    items = train_items + test_items
    maxima = [_check_pair(image, label) for image, label in items]
    class_names = _class_names(root, max(maxima), ignore_index, items, maxima)
    return SegmentationData(
        name=f"folder:{root}",
        images=[image for image, _ in items],
        labels=[label for _, label in items],
        class_names=class_names,
        train=list(range(len(train_items))),
        test=list(range(len(train_items), len(items))),
        ignore_index=ignore_index,
        categories=[root.resolve().name] * len(items),  # one category per folder (DatasetGAN's are single-class)
    )


def _pairs_in(folder: Path) -> list[tuple[Path, Path]]:
    """(image, label) paths by stem, sorted by stem."""
    label_folder = next((folder / name for name in LABEL_FOLDERS if (folder / name).is_dir()), None)
    if (folder / "images").is_dir() and label_folder is not None:
        images = _by_stem(folder / "images", IMAGE_SUFFIXES)
        labels = _by_stem(label_folder, (".png", ".npy"))
    else:
        labels = _by_stem(folder, (".npy",))
        images = {stem: path for stem, path in _by_stem(folder, IMAGE_SUFFIXES).items()}
    if not images and not labels:
        raise DatasetError(f"{folder}: no images and labels found (use images/ + labels/, or x.png + x.npy pairs)")
    for stem, image in sorted(images.items()):
        if stem not in labels:
            raise DatasetError(f"{image}: no label file with stem '{stem}'")
    for stem, label in sorted(labels.items()):
        if stem not in images:
            raise DatasetError(f"{label}: no image with stem '{stem}'")
    return [(images[stem], labels[stem]) for stem in sorted(images)]


def _by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes:
            if path.stem in found:
                raise DatasetError(f"{path}: two files with stem '{path.stem}' in {folder}")
            found[path.stem] = path
    return found


def _split(root: Path, items: list[tuple[Path, Path]], train_count: int | None) -> tuple[list, list]:
    by_stem = {image.stem: (image, label) for image, label in items}
    train_list = root / "train.txt"
    if train_list.is_file():
        train = _read_list(train_list, by_stem)
        test_list = root / "test.txt"
        test = _read_list(test_list, by_stem) if test_list.is_file() else [i for i in items if i not in train]
        return train, test
    count = len(items) // 2 if train_count is None else train_count
    if not 0 < count < len(items):
        raise DatasetError(f"{root}: cannot take {count} training images out of {len(items)}: use 1…{len(items) - 1}")
    return items[:count], items[count:]


def _read_list(path: Path, by_stem: dict[str, tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    chosen = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stem = Path(line.strip()).stem
        if not stem:
            continue
        if stem not in by_stem:
            raise DatasetError(f"{path}:{number}: no image + label pair with stem '{stem}'")
        chosen.append(by_stem[stem])
    return chosen


def _check_pair(image: Path, label: Path) -> int:
    """The label's largest value, after checking that it matches its image's size."""
    try:
        size = image_size(image)
    except ImageReadError as error:
        raise DatasetError(f"dataset image {error}") from None
    try:
        values = read_label(label)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(f"{label}: not a readable label map ({error})") from None
    if values.ndim != 2:
        raise DatasetError(f"{label}: a label map must be 2-D (H×W integers), got shape {values.shape}")
    if values.shape != size:
        raise DatasetError(
            f"{label}: label is {values.shape[1]}×{values.shape[0]} but its image {image.name} is {size[1]}×{size[0]}"
        )
    if values.min() < 0:
        raise DatasetError(f"{label}: negative label value {values.min()}")
    return int(values.max())


def _class_names(
    root: Path, largest: int, ignore_index: int | None, items: list[tuple[Path, Path]], maxima: list[int]
) -> list[str]:
    listed = root / "classes.txt"
    if listed.is_file():
        names = [line.strip() for line in listed.read_text().splitlines() if line.strip()]
        for (_, label), value in zip(items, maxima):
            if value >= len(names) and value != ignore_index:
                raise DatasetError(f"{label}: label value {value} but {listed} names only {len(names)} classes (0…{len(names) - 1})")
        return names
    if largest == ignore_index:  # the ignore value is not a class: find the largest real one
        largest = max(int(np.max(np.where(v == ignore_index, 0, v))) for v in (read_label(label) for _, label in items))
    return [f"class{i}" for i in range(largest + 1)]
