"""Image + label folders (DatasetGAN / ddpm-segmentation layout) for label-scarce segmentation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from autosel.data import load_folder, load_segmentation, read_label, shapes_class_names
from autosel.errors import DatasetError


def test_images_and_labels_pair_up_by_stem_with_the_list_file_split(label_folder):
    data = load_folder(label_folder)
    assert len(data.train) == 4 and len(data.test) == 8
    assert data.class_names == shapes_class_names()
    assert [p.stem for p in data.images] == [p.stem for p in data.labels]
    assert read_label(data.labels[0]).shape == (64, 64)


def test_without_a_list_file_the_first_stems_train(label_folder):
    (label_folder / "train.txt").unlink()
    data = load_folder(label_folder, train_count=3)
    assert [data.images[i].stem for i in data.train] == ["img000", "img001", "img002"]
    assert len(data.test) == 9


def test_train_and_test_subfolders_with_npy_labels(tmp_path):
    for split, count in (("train", 2), ("test", 3)):
        folder = tmp_path / split
        folder.mkdir()
        for number in range(count):
            Image.fromarray(np.full((6, 5, 3), 100, np.uint8)).save(folder / f"{split}{number}.png")
            np.save(folder / f"{split}{number}.npy", np.eye(6, 5, dtype=np.int64))
    data = load_folder(tmp_path)
    assert (len(data.train), len(data.test)) == (2, 3) and data.class_names == ["class0", "class1"]


def test_roles_share_the_training_images_and_halve_the_test_images(label_folder):
    search = load_segmentation(f"folder:{label_folder}", "search")
    heldout = load_segmentation(f"folder:{label_folder}", "heldout")
    assert search.train == heldout.train
    assert len(search.test) == len(heldout.test) == 4 and not set(search.test) & set(heldout.test)


def test_label_whose_size_differs_from_its_image_names_the_label(label_folder):
    bad = label_folder / "labels" / "img002.png"
    Image.fromarray(np.zeros((32, 64), np.uint8)).save(bad)
    with pytest.raises(DatasetError, match=r"img002.png: label is 64×32 but its image img002.jpg is 64×64"):
        load_folder(label_folder)


def test_image_without_label_is_named(label_folder):
    (label_folder / "labels" / "img005.png").unlink()
    with pytest.raises(DatasetError, match=r"img005.jpg: no label file with stem 'img005'"):
        load_folder(label_folder)


def test_label_value_beyond_the_class_list_is_named(label_folder):
    Image.fromarray(np.full((64, 64), 40, np.uint8)).save(label_folder / "labels" / "img001.png")
    with pytest.raises(DatasetError, match=r"img001.png: label value 40 but .*classes.txt names only 16 classes"):
        load_folder(label_folder)


def test_unknown_stem_in_the_list_file_is_named_with_its_line(label_folder):
    (label_folder / "train.txt").write_text("img000\nimg999\n")
    with pytest.raises(DatasetError, match=r"train.txt:2: no image \+ label pair with stem 'img999'"):
        load_folder(label_folder)


def test_an_empty_folder_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="no images and labels found"):
        load_folder(tmp_path)
    with pytest.raises(DatasetError, match="no such segmentation folder"):
        load_folder(tmp_path / "absent")


def test_segmentation_spec_refuses_keypoint_data(spair_root):
    with pytest.raises(DatasetError, match="holds keypoint pairs, not segmentation labels"):
        load_segmentation(f"spair:{spair_root}")
