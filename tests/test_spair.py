"""The SPair-71k loader reads the real file format, subsets by category and fails naming the file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from autosel.data import DatasetSpec, load_correspondence, load_spair
from autosel.errors import DatasetError


def test_reads_every_pair_of_a_split_with_sizes_from_the_files(spair_root):
    data = load_spair(spair_root, "val")
    assert len(data.pairs) == 6 and data.categories == ["car", "house", "tree"]
    pair = data.pairs[0]
    assert pair.source_size == pair.target_size == (64, 96)  # (height, width) of a 96×64 image
    assert pair.source_points.shape == pair.target_points.shape and pair.visible.all()
    assert str(data.images[pair.target]).endswith(".jpg")


def test_an_image_in_several_pairs_is_listed_once(spair_root):
    data = load_spair(spair_root, "trn")
    used = {index for pair in data.pairs for index in (pair.source, pair.target)}
    assert used == set(range(len(data.images))) and len(set(data.images)) == len(data.images)


def test_pairs_per_category_gives_a_balanced_seeded_subset(spair_root):
    first = load_spair(spair_root, "val", pairs_per_category=1, seed=3)
    again = load_spair(spair_root, "val", pairs_per_category=1, seed=3)
    assert sorted(p.category for p in first.pairs) == ["car", "house", "tree"]
    assert [p.name for p in first.pairs] == [p.name for p in again.pairs]


def test_max_pairs_is_taken_round_robin_over_categories(spair_root):
    data = load_spair(spair_root, "val", max_pairs=3)
    assert sorted(p.category for p in data.pairs) == ["car", "house", "tree"]


def test_roles_default_to_val_for_search_and_test_for_heldout(spair_root):
    search = load_correspondence(f"spair:{spair_root}", "search")
    heldout = load_correspondence(f"spair:{spair_root}", "heldout")
    assert search.name.endswith(":val") and heldout.name.endswith(":test")
    assert load_correspondence(f"spair:{spair_root}:trn", "heldout").name.endswith(":trn")


def test_spec_strings_parse_kind_path_and_split(tmp_path):
    assert DatasetSpec.parse(f"spair:{tmp_path}:test") == DatasetSpec("spair", tmp_path, "test")
    assert DatasetSpec.parse(f"spair:{tmp_path}") == DatasetSpec("spair", tmp_path, None)
    assert DatasetSpec.parse("shapes") == DatasetSpec("shapes")
    with pytest.raises(DatasetError, match="Did you mean 'spair'"):
        DatasetSpec.parse("spiar:/data")


def test_missing_annotation_folder_is_named(spair_root):
    for path in (spair_root / "PairAnnotation" / "test").iterdir():
        path.unlink()
    (spair_root / "PairAnnotation" / "test").rmdir()
    with pytest.raises(DatasetError, match=r"PairAnnotation/test: pair annotation folder missing"):
        load_spair(spair_root, "test")


def test_keypoint_outside_its_image_names_the_file_and_point(spair_root):
    path = sorted((spair_root / "PairAnnotation" / "val").glob("*.json"))[0]
    record = json.loads(path.read_text())
    record["trg_kps"][1] = [500.0, 10.0]
    path.write_text(json.dumps(record))
    with pytest.raises(DatasetError, match=rf"{path.name}: trg_kps\[1\] = \(500, 10\) is outside its 96×64 image"):
        load_spair(spair_root, "val")


def test_missing_image_names_the_annotation_and_the_image(spair_root):
    data = load_spair(spair_root, "val")
    data.images[0].unlink()
    with pytest.raises(DatasetError, match=rf"image .*{data.images[0].name} is missing"):
        load_spair(spair_root, "val")


def test_annotation_without_a_required_key_is_named(spair_root):
    path = sorted((spair_root / "PairAnnotation" / "val").glob("*.json"))[0]
    record = json.loads(path.read_text())
    del record["trg_bndbox"]
    path.write_text(json.dumps(record))
    with pytest.raises(DatasetError, match=rf"{path.name}: pair annotation lacks trg_bndbox"):
        load_spair(spair_root, "val")


def test_a_category_without_pairs_is_an_error_naming_it(spair_root):
    (spair_root / "JPEGImages" / "bottle").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(spair_root / "JPEGImages" / "bottle" / "x.jpg")
    with pytest.raises(DatasetError, match="category 'bottle' has no pairs in split 'val'"):
        load_spair(spair_root, "val")
    with pytest.raises(DatasetError, match="category 'hous' has no pairs.*Did you mean 'house'"):
        load_spair(spair_root, "test", categories=["hous"])


def test_an_empty_split_is_an_error(spair_root):
    for path in (spair_root / "PairAnnotation" / "trn").iterdir():
        path.unlink()
    with pytest.raises(DatasetError, match="no pair annotation files"):
        load_spair(spair_root, "trn")
