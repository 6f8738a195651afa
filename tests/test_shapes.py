"""The procedural shapes dataset: determinism, exact ground truth, pairs and splits."""

from __future__ import annotations

import hashlib
from itertools import islice

import numpy as np
import pytest

from autosel.data import CATEGORIES, ShapesDataset


def fingerprint(item) -> str:
    return hashlib.sha256(item.image.tobytes()).hexdigest()


def test_same_split_index_and_size_give_the_same_image():
    first, second = ShapesDataset("search", size=48)[7], ShapesDataset("search", size=48)[7]
    assert np.array_equal(first.image, second.image)
    assert np.array_equal(first.keypoints, second.keypoints) and np.array_equal(first.parts, second.parts)


def test_another_seed_gives_other_images():
    assert fingerprint(ShapesDataset("search", seed=0)[3]) != fingerprint(ShapesDataset("search", seed=1)[3])


@pytest.mark.parametrize("index", range(24))
def test_visible_keypoints_lie_inside_the_image_on_their_own_part(index):
    item = ShapesDataset("heldout", size=64)[index]
    category = next(c for c in CATEGORIES if c.name == item.category)
    assert item.visible.mean() >= 0.8
    for k, (x, y) in enumerate(item.keypoints):
        if not item.visible[k]:
            continue
        assert 0 <= x < 64 and 0 <= y < 64
        part = category.keypoints[k][1]
        assert item.part_names[item.parts[int(round(y)), int(round(x))] - 1] == part


def test_bbox_encloses_the_object_mask():
    item = ShapesDataset("train", size=64)[5]
    x1, y1, x2, y2 = (int(v) for v in item.bbox)
    inside = item.parts[y1:y2, x1:x2] > 0
    assert inside.sum() == (item.parts > 0).sum()


def test_every_category_has_distinct_named_keypoints_and_parts():
    assert len(CATEGORIES) >= 4
    for category in CATEGORIES:
        names = [name for name, _, _ in category.keypoints]
        assert 4 <= len(names) <= 8 and len(set(names)) == len(names)
        assert {part for _, part, _ in category.keypoints} <= set(category.part_names)


def test_instances_of_a_category_differ_in_appearance():
    dataset = ShapesDataset("search", size=64)
    houses = [dataset[i] for i in range(0, 16, len(CATEGORIES))]
    colours = [item.image[item.parts > 0].mean(axis=0) for item in houses]
    assert max(np.abs(a - b).max() for a in colours for b in colours) > 40


def test_pairs_are_two_different_images_of_one_category():
    dataset = ShapesDataset("search", size=32, length=40)
    pairs = list(islice(dataset.pairs(24, seed=3), 24))
    assert len(pairs) == 24
    for pair in pairs:
        assert pair.source_index != pair.target_index
        assert pair.source.category == pair.target.category
    assert {pair.source.category for pair in pairs} == {c.name for c in CATEGORIES}


def test_pairs_are_seeded():
    dataset = ShapesDataset("search", size=32, length=40)
    first = [(p.source_index, p.target_index) for p in dataset.pairs(8, seed=1)]
    again = [(p.source_index, p.target_index) for p in dataset.pairs(8, seed=1)]
    assert first == again


def test_splits_share_no_image():
    seen = {split: {fingerprint(ShapesDataset(split, size=32)[i]) for i in range(40)} for split in ("train", "search", "heldout")}
    assert not (seen["train"] & seen["search"] or seen["train"] & seen["heldout"] or seen["search"] & seen["heldout"])


def test_unknown_split_names_the_valid_ones():
    with pytest.raises(ValueError, match="train, search, heldout"):
        ShapesDataset("test")
