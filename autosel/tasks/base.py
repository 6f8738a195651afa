"""The task interface and registry.

A task names the images it needs (:attr:`Task.images`), receives one feature map per image
(C×H×W or 1×C×H×W, any resolution, indexable by image number: a list, a dict or a lazy
mapping over a cache) and returns a :class:`TaskResult`. Tasks never run the diffusion model,
so they score cached features as well as fresh ones. Register a new task with
:func:`register_task`; the search finds it by name.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

import torch

from autosel.data.records import ImageSource
from autosel.errors import InvalidInputError, did_you_mean

FeatureMaps = Union[Sequence[torch.Tensor], Mapping[int, torch.Tensor]]


@dataclass(frozen=True)
class TaskResult:
    """What a task measured.

    Attributes:
        task: the task's registered name.
        metrics: metric name → value (fractions in [0, 1]).
        primary: the metric a search optimises (a key of ``metrics``).
        n_items: how many items were scored (keypoints, pixels…; see ``unit``).
        unit: what ``n_items`` counts.
        per_category: category (or class) → its own metrics.
        descriptions: metric name → what it measures, with normalisation and averaging.
    """

    task: str
    metrics: dict[str, float]
    primary: str
    n_items: int
    unit: str
    per_category: dict[str, dict[str, float]] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)

    @property
    def value(self) -> float:
        """The primary metric's value."""
        return self.metrics[self.primary]

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready dict (NaN → None)."""

        def clean(values: dict[str, float]) -> dict[str, float | None]:
            return {k: (None if math.isnan(v) else v) for k, v in values.items()}

        return {
            "task": self.task,
            "primary": self.primary,
            "value": None if math.isnan(self.value) else self.value,
            "n_items": self.n_items,
            "unit": self.unit,
            "metrics": clean(self.metrics),
            "per_category": {k: clean(v) for k, v in self.per_category.items()},
            "descriptions": dict(self.descriptions),
        }


class Scorer(ABC):
    """Scores one feature choice image by image, in the task's :meth:`Task.image_order`, holding
    only what is still needed (a pair's first image until its second arrives, the classifier's
    training pixels until it is fitted): the sweep streams a whole dataset through one."""

    @abstractmethod
    def add(self, index: int, features: torch.Tensor) -> None:
        """Take the C×H×W feature map of image ``index``."""

    @abstractmethod
    def result(self) -> TaskResult:
        """The result, once every image of the order has been added."""


class Task(ABC):
    """A proxy task: scores feature maps of its images.

    Subclasses set ``kind``, ``primary_metric`` and ``proxy_options`` and implement :meth:`scorer`
    and :meth:`from_spec` (see :mod:`autosel.data.specs` for dataset specs); ``name`` is set by
    :func:`register_task`. Adding a task touches only this package.
    """

    name: ClassVar[str]
    kind: ClassVar[str]
    """What the task scores: ``correspondence`` (keypoint pairs; evaluation protocols apply) or
    ``segmentation``. A search is confirmed only by a task of its own kind."""
    primary_metric: ClassVar[str]
    proxy_options: ClassVar[tuple[str, ...]] = ()
    """The search space's proxy settings (fields of :class:`autosel.space.ProxySection`) the task takes."""

    images: list[ImageSource]

    @classmethod
    @abstractmethod
    def from_spec(cls, dataset: str, role: str = "search", **options: Any) -> Task:
        """The task on dataset ``dataset`` (a spec string) in ``role`` (search / heldout)."""

    @abstractmethod
    def scorer(self) -> Scorer:
        """A fresh streaming scorer for one feature choice."""

    def image_order(self) -> list[int]:
        """The images the task needs, in the order its scorer takes them."""
        return list(range(len(self.images)))

    def image_categories(self) -> list[str | None] | None:
        """The category of each image (what a ``{category}`` prompt names), or ``None`` when
        the dataset has none."""
        return None

    def categories_of(self, indices: Sequence[int]) -> list[str | None] | None:
        """:meth:`image_categories` of the images ``indices`` (``None`` when there are none)."""
        categories = self.image_categories()
        return None if categories is None else [categories[i] for i in indices]

    def evaluate(self, features: FeatureMaps) -> TaskResult:
        """Score ``features[i]``, the feature map of ``self.images[i]``."""
        scorer = self.scorer()
        for index in self.image_order():
            scorer.add(index, feature_map(features, index))
        return scorer.result()


TASKS: dict[str, type[Task]] = {}


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator: make a :class:`Task` subclass available under ``name``."""

    def register(cls: type[Task]) -> type[Task]:
        cls.name = name
        TASKS[name] = cls
        return cls

    return register


def get_task(name: str) -> type[Task]:
    """The task class registered as ``name``.

    Raises:
        InvalidInputError: no such task (with the closest names).
    """
    if name not in TASKS:
        raise InvalidInputError(f"unknown task '{name}'.{did_you_mean(name, TASKS)} Tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def make_task(name: str, dataset: str, role: str = "search", **options: Any) -> Task:
    """The task ``name`` on ``dataset`` in ``role``; ``None`` options take the task's defaults.

    Raises:
        InvalidInputError: unknown task, or an option the task does not take.
    """
    cls = get_task(name)
    options = {key: value for key, value in options.items() if value is not None}
    accepted = _options_of(cls)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise InvalidInputError(f"task '{name}' takes no option {', '.join(unknown)}: it takes {', '.join(sorted(accepted))}")
    return cls.from_spec(dataset, role, **options)


def _options_of(cls: type[Task]) -> set[str]:
    """Keyword options of ``from_spec`` and ``__init__`` (those after the data)."""
    names = set()
    for function in (cls.from_spec, cls.__init__):
        parameters = list(inspect.signature(function).parameters.values())
        names |= {p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return names - {"self", "cls", "data", "dataset", "role"}


def feature_map(features: FeatureMaps, index: int) -> torch.Tensor:
    """``features[index]`` as a float32 C×H×W tensor (a leading batch of 1 is dropped)."""
    try:
        value = features[index]
    except (KeyError, IndexError):
        raise InvalidInputError(f"no feature map for image {index}") from None
    if value.ndim == 4 and value.shape[0] == 1:
        value = value[0]
    if value.ndim != 3:
        raise InvalidInputError(f"the feature map of image {index} must be C×H×W, got shape {tuple(value.shape)}")
    return value.float()
