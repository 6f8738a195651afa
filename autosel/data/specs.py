"""Dataset spec strings, as taken by every ``--dataset`` option.

- ``shapes`` — the built-in procedural data (splits ``search`` and ``heldout``);
- ``spair:PATH[:split]`` — SPair-71k (split ``trn``, ``val`` or ``test``);
- ``folder:PATH`` — image + integer label files (segmentation);
- ``images:PATH`` — any folder of plain images, no labels (the label-free proxy,
  :mod:`autosel.data.unlabelled`).

A search reads its proxy data in one of two *roles*: ``search`` (selection) and ``heldout``
(every reported number). Without an explicit split, SPair uses ``val`` for search and
``test`` for held-out; a segmentation folder shares its labelled ``train`` images between the
roles and gives the first half of its ``test`` images to search, the second half to held-out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autosel.data.folder import load_folder
from autosel.data.records import CorrespondenceData, KeypointPair, SegmentationData
from autosel.data.shapes import CATEGORIES, ShapesDataset
from autosel.data.spair import SPAIR_SPLITS, load_spair
from autosel.data.unlabelled import ImageSet, load_image_folder
from autosel.errors import DatasetError, did_you_mean

KINDS = ("shapes", "spair", "folder", "images")
ROLES = ("search", "heldout")
_SPAIR_ROLE_SPLIT = {"search": "val", "heldout": "test"}


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed dataset spec: ``kind``, an optional ``path`` and an optional ``split``."""

    kind: str
    path: Path | None = None
    split: str | None = None

    @classmethod
    def parse(cls, text: str) -> DatasetSpec:
        """Parse ``shapes``, ``spair:PATH[:split]``, ``folder:PATH`` or ``images:PATH``.

        Raises:
            DatasetError: an unknown kind or a missing path.
        """
        kind, _, rest = text.partition(":")
        if kind not in KINDS:
            raise DatasetError(f"unknown dataset '{text}':{did_you_mean(kind, KINDS)} use shapes, spair:PATH[:split], folder:PATH or images:PATH")
        if kind == "shapes":
            if rest:
                raise DatasetError(f"dataset 'shapes' takes no path, got '{text}'")
            return cls("shapes")
        if not rest:
            raise DatasetError(f"dataset '{text}' needs a path: {kind}:PATH")
        split = None
        if kind == "spair":
            head, _, tail = rest.rpartition(":")
            if head and tail in SPAIR_SPLITS:
                rest, split = head, tail
        return cls(kind, Path(rest).expanduser(), split)

    def __str__(self) -> str:
        if self.kind == "shapes":
            return "shapes"
        return f"{self.kind}:{self.path}" + (f":{self.split}" if self.split else "")


def load_correspondence(
    spec: str | DatasetSpec,
    role: str = "search",
    pairs: int | None = None,
    pairs_per_category: int | None = None,
    shapes_size: int = 64,
    seed: int = 0,
) -> CorrespondenceData:
    """Keypoint pairs for ``role`` from a spec.

    Args:
        spec: ``shapes`` or ``spair:PATH[:split]``.
        role: ``search`` or ``heldout``.
        pairs: at most this many pairs (shapes: exactly this many; default 100).
        pairs_per_category: SPair: a seeded, balanced subset of this many pairs per category.
        shapes_size: shapes: the side of the generated images.
        seed: seed of the pair choice.
    """
    spec = spec if isinstance(spec, DatasetSpec) else DatasetSpec.parse(spec)
    _check_role(role)
    if spec.kind == "shapes":
        return _shapes_pairs(role, pairs or 100, pairs_per_category, shapes_size, seed)
    if spec.kind == "spair":
        assert spec.path is not None
        return load_spair(spec.path, spec.split or _SPAIR_ROLE_SPLIT[role], pairs_per_category, pairs, seed=seed)
    if spec.kind == "images":
        raise DatasetError(f"dataset '{spec}' holds no keypoint pairs: use the task correspondence-label-free on it, "
                           "or shapes or spair:PATH for labelled correspondence")
    raise DatasetError(f"dataset '{spec}' holds segmentation labels, not keypoint pairs: use shapes or spair:PATH for correspondence")


def load_training_pairs(
    spec: str | DatasetSpec,
    pairs: int | None = None,
    shapes_size: int = 64,
    seed: int = 0,
) -> CorrespondenceData:
    """Keypoint pairs to *train* a correspondence head on, disjoint from both roles' pairs:
    the shapes ``train`` split (the one the tiny models learned from; default 200 pairs), or
    SPair-71k's ``trn`` split (every pair, or a seeded round-robin subset of ``pairs``).
    """
    spec = spec if isinstance(spec, DatasetSpec) else DatasetSpec.parse(spec)
    if spec.kind == "shapes":
        return _shapes_pairs("train", pairs or 200, None, shapes_size, seed)
    if spec.kind == "spair":
        assert spec.path is not None
        return load_spair(spec.path, "trn", None, pairs, seed=seed)
    raise DatasetError(f"dataset '{spec}' holds segmentation labels, not keypoint pairs: use shapes or spair:PATH")


def load_segmentation(
    spec: str | DatasetSpec,
    role: str = "search",
    train_images: int | None = None,
    test_images: int | None = None,
    shapes_size: int = 64,
) -> SegmentationData:
    """Labelled images for ``role`` from a spec.

    Args:
        spec: ``shapes`` or ``folder:PATH``.
        role: ``search`` or ``heldout``.
        train_images: labelled images the classifier learns from (shapes default 8; folder:
            the count split when there is no list file or train/ folder).
        test_images: at most this many scored images (shapes default 32).
        shapes_size: shapes: the side of the generated images.
    """
    spec = spec if isinstance(spec, DatasetSpec) else DatasetSpec.parse(spec)
    _check_role(role)
    if spec.kind == "shapes":
        return _shapes_segmentation(role, train_images or 8, test_images or 32, shapes_size)
    if spec.kind == "folder":
        assert spec.path is not None
        data = load_folder(spec.path, train_count=train_images)
        half = (len(data.test) + 1) // 2
        data.test = data.test[:half] if role == "search" else data.test[half:]
        if not data.test:
            raise DatasetError(f"{spec.path}: too few test images to give the '{role}' role any (need at least 2)")
        if test_images is not None:
            data.test = data.test[:test_images]
        data.name = f"{data.name} ({role})"
        return data
    what = "no labels" if spec.kind == "images" else "keypoint pairs, not segmentation labels"
    raise DatasetError(f"dataset '{spec}' holds {what}: use shapes or folder:PATH for segmentation")


def load_plain_images(
    spec: str | DatasetSpec, role: str = "search", count: int | None = None, shapes_size: int = 64
) -> ImageSet:
    """The images of ``role`` without their labels: a plain folder (``images:PATH``) or the
    built-in shapes (the first ``count`` of the role's split; default 100).

    Raises:
        DatasetError: another kind of spec, or an unusable folder.
    """
    spec = spec if isinstance(spec, DatasetSpec) else DatasetSpec.parse(spec)
    _check_role(role)
    if spec.kind == "images":
        assert spec.path is not None
        return load_image_folder(spec.path, role, count)
    if spec.kind == "shapes":
        dataset = ShapesDataset(role, size=shapes_size)
        return ImageSet(name=f"shapes:{role}", images=[dataset[index].image for index in range(count or 100)])
    raise DatasetError(f"dataset '{spec}': the label-free proxy reads images:PATH (any folder of images) or shapes")


def shared_split(spec: str | DatasetSpec) -> str | None:
    """The split a spec pins for both roles (``spair:PATH:test``), or ``None`` when the search
    and held-out roles read different data (shapes, folders, SPair without a split)."""
    spec = spec if isinstance(spec, DatasetSpec) else DatasetSpec.parse(spec)
    return spec.split if spec.kind == "spair" else None


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise DatasetError(f"unknown role '{role}': use {' or '.join(ROLES)}")


def _shapes_pairs(role: str, count: int, per_category: int | None, size: int, seed: int) -> CorrespondenceData:
    if per_category is not None:
        count = min(count, per_category * len(CATEGORIES))
    dataset = ShapesDataset(role, size=size)
    images, index_of, pairs = [], {}, []
    for number, pair in enumerate(dataset.pairs(count, seed=seed)):
        ends = []
        for item, index in ((pair.source, pair.source_index), (pair.target, pair.target_index)):
            if index not in index_of:
                index_of[index] = len(images)
                images.append(item.image)
            ends.append(index_of[index])
        pairs.append(
            KeypointPair(
                source=ends[0], target=ends[1], category=pair.source.category,
                source_points=pair.source.keypoints, target_points=pair.target.keypoints,
                visible=pair.source.visible & pair.target.visible,
                source_size=(size, size), target_size=(size, size), target_bbox=pair.target.bbox,
                name=f"shapes-{role}-pair{number}",
            )
        )
    return CorrespondenceData(name=f"shapes:{role}", images=images, pairs=pairs)


def shapes_class_names() -> list[str]:
    """Segmentation classes of the built-in data: background, then every category's parts."""
    return ["background"] + [f"{c.name}/{part}" for c in CATEGORIES for part in c.part_names]


def _shapes_segmentation(role: str, train: int, test: int, size: int) -> SegmentationData:
    offsets, offset = {}, 0
    for category in CATEGORIES:
        offsets[category.name] = offset
        offset += len(category.parts)
    dataset = ShapesDataset(role, size=size)
    images, labels, categories = [], [], []
    for index in range(train + test):
        item = dataset[index]
        images.append(item.image)
        labels.append(item.parts + (item.parts > 0) * offsets[item.category])
        categories.append(item.category)
    return SegmentationData(
        name=f"shapes:{role}", images=images, labels=labels, class_names=shapes_class_names(),
        train=list(range(train)), test=list(range(train, train + test)), ignore_index=None, categories=categories,
    )
