"""The task interface: tasks by name, user-registered tasks, results that explain themselves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autosel.errors import InvalidInputError
from autosel.tasks import TASKS, CorrespondenceTask, SegmentationTask, Task, TaskResult, get_task, make_task, register_task


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

        def evaluate(self, features):
            mean = float(np.mean([features[i].float().mean() for i in range(len(self.images))]))
            return TaskResult(self.name, {"mean": mean}, "mean", len(self.images), "images")

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
    task = make_task("correspondence", "shapes", pairs=None, soft_window=None, image_size=32)
    assert len(task.data.pairs) == 100 and task.soft_window == 0


def test_result_dicts_are_json_ready():
    result = TaskResult("t", {"a": float("nan"), "b": 0.5}, "b", 3, "things", {"x": {"a": float("nan")}})
    document = result.to_dict()
    assert document["metrics"] == {"a": None, "b": 0.5} and document["per_category"] == {"x": {"a": None}}
    assert document["value"] == 0.5 and not math.isnan(result.value)
