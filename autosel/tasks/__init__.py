"""Proxy tasks that score feature maps (they never run the diffusion model themselves).

``get_task("correspondence")``, ``"correspondence-trained"``, ``"correspondence-label-free"`` and
``"segmentation"`` give the registered classes;
add a task with :func:`register_task`.
"""

from autosel.tasks.base import (
    TASKS,
    FeatureMaps,
    Scorer,
    Task,
    TaskResult,
    feature_map,
    get_task,
    make_task,
    register_task,
)
from autosel.tasks.correspondence import (
    CorrespondenceTask,
    best_points,
    match_points,
    match_prepared,
    metric_name,
    pck,
    prepare_features,
)
from autosel.tasks.label_free import LABEL_FREE_TASK, LabelFreeCorrespondenceTask, label_free_metric
from autosel.tasks.segmentation import SegmentationTask
from autosel.tasks.trained import TrainedCorrespondenceTask

__all__ = [
    "LABEL_FREE_TASK",
    "TASKS",
    "CorrespondenceTask",
    "FeatureMaps",
    "LabelFreeCorrespondenceTask",
    "Scorer",
    "SegmentationTask",
    "Task",
    "TaskResult",
    "TrainedCorrespondenceTask",
    "best_points",
    "feature_map",
    "get_task",
    "label_free_metric",
    "make_task",
    "match_points",
    "match_prepared",
    "metric_name",
    "pck",
    "prepare_features",
    "register_task",
]
