"""Label-scarce segmentation: a seeded pixel classifier scored by mean IoU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from autosel.data import SegmentationData
from autosel.errors import InvalidInputError
from autosel.tasks import SegmentationTask


def one_hot(labels: np.ndarray, classes: int) -> torch.Tensor:
    return F.one_hot(torch.from_numpy(labels).long().clamp(max=classes - 1), classes).permute(2, 0, 1).float()


def hand_data(train_label, test_label, ignore_index=None, classes=("a", "b")):
    images = [np.zeros((4, 4, 3), np.uint8)] * 2
    return SegmentationData("hand-built", images, [np.asarray(train_label), np.asarray(test_label)], list(classes), [0], [1], ignore_index)


def test_perfect_features_give_miou_one_on_shapes():
    task = SegmentationTask.from_spec("shapes", train_images=8, test_images=8)
    classes = len(task.class_names)
    result = task.evaluate([one_hot(task.labels(i).numpy(), classes) for i in range(len(task.images))])
    assert result.metrics["miou"] == 1.0 and result.metrics["pixel-accuracy"] == 1.0
    assert all(value["iou"] == 1.0 for value in result.per_category.values())


def test_constant_features_predict_the_majority_class_as_computed_by_hand():
    train = np.array([[0] * 4] * 3 + [[1] * 4])  # 12 of class a, 4 of class b
    test = np.array([[0] * 4] * 2 + [[1] * 4] * 2)  # 8 and 8
    task = SegmentationTask(hand_data(train, test))
    result = task.evaluate([torch.ones(3, 2, 2)] * 2)
    assert result.metrics["miou"] == pytest.approx((8 / 16 + 0) / 2)
    assert result.metrics["pixel-accuracy"] == pytest.approx(0.5)
    assert result.per_category["b"]["iou"] == 0.0


def test_ignored_pixels_are_neither_trained_on_nor_scored():
    train = np.array([[0, 0, 1, 1]] * 4)
    test = np.array([[0, 255, 1, 255]] * 4)
    result = SegmentationTask(hand_data(train, test, ignore_index=255)).evaluate([one_hot(train, 2), one_hot(np.array([[0, 0, 1, 1]] * 4), 2)])
    assert result.n_items == 8 and result.metrics["miou"] == 1.0


def test_a_small_mlp_ensemble_learns_perfect_features_too():
    task = SegmentationTask.from_spec("shapes", train_images=4, test_images=4, classifier="mlp", ensemble=3, steps=200)
    classes = len(task.class_names)
    result = task.evaluate([one_hot(task.labels(i).numpy(), classes) for i in range(len(task.images))])
    assert result.metrics["miou"] > 0.95


def test_the_same_seed_gives_the_same_score():
    task = SegmentationTask.from_spec("shapes", train_images=4, test_images=4)
    noisy = [torch.randn(6, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(len(task.images))]
    assert task.evaluate(noisy).to_dict() == SegmentationTask.from_spec("shapes", train_images=4, test_images=4).evaluate(noisy).to_dict()


def test_large_label_maps_are_scored_on_a_reduced_grid():
    label = np.zeros((200, 100), np.int64)
    label[:, 50:] = 1
    task = SegmentationTask(hand_data(label, label), resolution=50)
    assert tuple(task.labels(1).shape) == (50, 25)
    result = task.evaluate([one_hot(label, 2)] * 2)
    assert result.n_items == 50 * 25 and result.metrics["miou"] == 1.0


def test_bad_options_are_refused():
    data = hand_data(np.zeros((4, 4)), np.zeros((4, 4)))
    with pytest.raises(InvalidInputError, match="unknown classifier 'svm'"):
        SegmentationTask(data, classifier="svm")
    with pytest.raises(InvalidInputError, match="must be positive"):
        SegmentationTask(data, ensemble=0)
