"""The task interface: tasks by name, user-registered tasks, results that explain themselves."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from autosel.errors import InvalidInputError
from autosel.tasks import (
    TASKS,
    CorrespondenceTask,
    Scorer,
    SegmentationTask,
    Task,
    TaskResult,
    get_task,
    make_task,
    register_task,
)


def test_both_proxy_tasks_are_registered_by_name():
    assert get_task("correspondence") is CorrespondenceTask
    assert get_task("segmentation") is SegmentationTask


def test_an_unknown_task_name_suggests_the_closest():
    with pytest.raises(InvalidInputError, match="unknown task 'corespondence'.*Did you mean 'correspondence'"):
        get_task("corespondence")


def test_a_user_task_registers_without_touching_the_search_code():
    @register_task("mean-activation")
    class MeanActivation(Task):
        primary_metric = "mean"

        def __init__(self, images):
            self.images = images

        @classmethod
        def from_spec(cls, dataset, role="search", count=2):
            return cls([np.zeros((4, 4, 3), np.uint8)] * count)

        def scorer(self):
            task, means = self, []

            class MeanScorer(Scorer):
                def add(self, index, features):
                    means.append(float(features.mean()))

                def result(self):
                    return TaskResult(task.name, {"mean": float(np.mean(means))}, "mean", len(means), "images")

            return MeanScorer()

    try:
        import torch

        task = make_task("mean-activation", "anything", count=3)
        assert task.evaluate([torch.ones(2, 2, 2)] * 3).value == 1.0
    finally:
        TASKS.pop("mean-activation")


def test_options_a_task_does_not_take_are_refused_by_name():
    with pytest.raises(InvalidInputError, match="task 'segmentation' takes no option pairs"):
        make_task("segmentation", "shapes", pairs=10)


def test_none_options_take_the_task_defaults():
    task = make_task("correspondence", "shapes", pairs=None, soft_window=None, shapes_size=32)
    assert len(task.data.pairs) == 100 and task.soft_window == 0


def test_the_correspondence_scorer_holds_maps_only_up_to_its_memory_budget():
    task = CorrespondenceTask.from_spec("shapes", pairs=12)
    scorer = task.scorer()
    scorer.batch_bytes = 3 * torch.randn(4, 8, 8).nbytes  # score the ready pairs once 3 maps are held
    held = []
    for index in task.image_order():
        scorer.add(index, torch.randn(4, 8, 8))
        held.append(len(scorer.raw))
    assert max(held) <= 4 and scorer.result().n_items > 0 and not scorer.raw


def test_segmentation_refuses_a_test_image_before_the_training_images():
    task = SegmentationTask.from_spec("shapes", train_images=2, test_images=2)
    with pytest.raises(InvalidInputError, match="came before every labelled training image"):
        task.scorer().add(task.data.test[0], torch.randn(4, 8, 8))


def test_result_dicts_are_json_ready():
    result = TaskResult("t", {"a": float("nan"), "b": 0.5}, "b", 3, "things", {"x": {"a": float("nan")}})
    document = result.to_dict()
    assert document["metrics"] == {"a": None, "b": 0.5} and document["per_category"] == {"x": {"a": None}}
    assert document["value"] == 0.5 and not math.isnan(result.value)
