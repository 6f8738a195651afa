"""Label-scarce semantic segmentation (the DDPM-segmentation / Horse-21 protocol, CPU-sized).

A pixel classifier (linear, or a small MLP; an ensemble of a few, their softmaxes averaged)
learns from the per-pixel features of a handful of labelled images and is scored on held-out
images by intersection over union. Features are bilinearly upsampled to the label grid; label
maps larger than ``resolution`` are first reduced (nearest neighbour) so that their longer side
is ``resolution``. Per-class IoU accumulates pixels over all scored images; ``miou`` is their
mean over the classes present in the truth or the prediction. Everything is seeded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from autosel.data.records import ImageSource, SegmentationData, read_label
from autosel.data.specs import load_segmentation
from autosel.errors import InvalidInputError
from autosel.tasks.base import Scorer, Task, TaskResult, register_task

CLASSIFIERS = ("linear", "mlp")


@register_task("segmentation")
class SegmentationTask(Task):
    """Train a pixel classifier on ``data.train`` features, score mean IoU on ``data.test``.

    Args:
        data: labelled images with their train/test split.
        classifier: ``linear`` or ``mlp`` (one hidden layer of ``hidden`` units).
        ensemble: number of independently seeded classifiers whose softmaxes are averaged.
        pixels_per_image: training pixels sampled per labelled image (None: all of them).
        steps: full-batch Adam steps per classifier.
        resolution: longest side of the label grid features are scored on.
        seed: seed of pixel sampling and classifier initialisation.

    Example:
        >>> task = SegmentationTask.from_spec("shapes", role="search")
        >>> task.evaluate(features).metrics["miou"]
    """

    kind = "segmentation"
    primary_metric = "miou"
    proxy_options = ("train_images", "test_images", "shapes_size")

    def __init__(
        self,
        data: SegmentationData,
        classifier: str = "linear",
        hidden: int = 64,
        ensemble: int = 2,
        pixels_per_image: int | None = 1024,
        steps: int = 150,
        learning_rate: float | None = None,
        resolution: int = 64,
        seed: int = 0,
    ) -> None:
        if classifier not in CLASSIFIERS:
            raise InvalidInputError(f"unknown classifier '{classifier}': use {' or '.join(CLASSIFIERS)}")
        if ensemble < 1 or steps < 1 or resolution < 1 or (pixels_per_image is not None and pixels_per_image < 1):
            raise InvalidInputError("ensemble, steps, resolution and pixels_per_image must be positive")
        if not data.train or not data.test:
            raise InvalidInputError(f"dataset {data.name} needs labelled training images and images to score")
        self.data = data
        self.classifier, self.hidden, self.ensemble = classifier, hidden, ensemble
        self.pixels_per_image, self.steps, self.resolution, self.seed = pixels_per_image, steps, resolution, seed
        self.learning_rate = learning_rate or (0.05 if classifier == "linear" else 0.01)
        self._labels: dict[int, torch.Tensor] = {}
        self._samples: dict[int, torch.Tensor] = {}

    @classmethod
    def from_spec(
        cls,
        dataset: str,
        role: str = "search",
        train_images: int | None = None,
        test_images: int | None = None,
        shapes_size: int = 64,
        **options: Any,
    ) -> SegmentationTask:
        return cls(load_segmentation(dataset, role, train_images, test_images, shapes_size), **options)

    @property
    def images(self) -> list[ImageSource]:  # type: ignore[override]
        return self.data.images

    def image_categories(self) -> list[str | None] | None:
        """Each image's category, when the dataset records them (shapes: the object; a folder
        dataset: the folder's name)."""
        return list(self.data.categories) if self.data.categories else None

    @property
    def class_names(self) -> list[str]:
        return self.data.class_names

    def labels(self, index: int) -> torch.Tensor:
        """The H×W label map of image ``index`` on the scoring grid (cached)."""
        if index not in self._labels:
            values = torch.from_numpy(read_label(self.data.labels[index]))
            height, width = values.shape
            scale = min(1.0, self.resolution / max(height, width))
            if scale < 1.0:
                size = (max(1, round(height * scale)), max(1, round(width * scale)))
                values = F.interpolate(values[None, None].float(), size=size, mode="nearest-exact")[0, 0].long()
            self._labels[index] = values
        return self._labels[index]

    def pixel_features(self, features: torch.Tensor, index: int) -> torch.Tensor:
        """(H·W)×C features of image ``index`` (a C×h×w map) on its label grid."""
        size = tuple(self.labels(index).shape)
        value = features.float()
        if tuple(value.shape[-2:]) != size:
            value = F.interpolate(value[None], size=size, mode="bilinear", align_corners=False)[0]
        return value.reshape(value.shape[0], -1).T

    def image_order(self) -> list[int]:
        return list(self.data.train) + list(self.data.test)

    def scorer(self) -> Scorer:
        return _SegmentationScorer(self)

    def fit(self, inputs: torch.Tensor, targets: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """The trained ensemble as a function: (N×C pixel features) → N×classes probabilities."""
        mean, std = inputs.mean(0), inputs.std(0).clamp_min(1e-6)
        members = [self._fit((inputs - mean) / std, targets, member) for member in range(self.ensemble)]

        @torch.no_grad()
        def predict(pixels: torch.Tensor) -> torch.Tensor:
            standardised = (pixels - mean) / std
            return torch.stack([torch.softmax(m(standardised), dim=1) for m in members]).mean(0)

        return predict

    def confusion(self, predict: Callable[[torch.Tensor], torch.Tensor], index: int, features: torch.Tensor) -> torch.Tensor:
        """classes×classes counts (truth × prediction) of image ``index``, ignored pixels left out."""
        count = len(self.class_names)
        truth = self.labels(index).reshape(-1)
        predicted = predict(self.pixel_features(features, index)).argmax(1)
        if self.data.ignore_index is not None:
            keep = truth != self.data.ignore_index
            truth, predicted = truth[keep], predicted[keep]
        return torch.bincount(truth * count + predicted, minlength=count * count).view(count, count)

    def training_pixels(self, index: int, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The seeded training pixels of labelled image ``index``: (N×C features, N labels)."""
        labels = self.labels(index).reshape(-1)
        chosen = self._sample(index, labels)
        return self.pixel_features(features, index)[chosen], labels[chosen]

    def _sample(self, index: int, labels: torch.Tensor) -> torch.Tensor:
        """Seeded training pixels of a labelled image (ignored pixels left out), fixed per task."""
        if index not in self._samples:
            usable = torch.arange(len(labels))
            if self.data.ignore_index is not None:
                usable = usable[labels != self.data.ignore_index]
            if self.pixels_per_image is not None and self.pixels_per_image < len(usable):
                generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
                usable = usable[torch.randperm(len(usable), generator=generator)[: self.pixels_per_image]].sort().values
            self._samples[index] = usable
        return self._samples[index]

    def _fit(self, inputs: torch.Tensor, targets: torch.Tensor, member: int) -> nn.Module:
        count = len(self.class_names)
        if targets.max() >= count:
            raise InvalidInputError(f"label value {int(targets.max())} in {self.data.name} but only {count} classes")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 7919 + member)
            if self.classifier == "linear":
                model: nn.Module = nn.Linear(inputs.shape[1], count)
            else:
                model = nn.Sequential(nn.Linear(inputs.shape[1], self.hidden), nn.ReLU(), nn.Linear(self.hidden, count))
        optimiser = torch.optim.Adam(model.parameters(), lr=self.learning_rate, weight_decay=1e-4)
        with torch.enable_grad():
            for _ in range(self.steps):
                optimiser.zero_grad()
                F.cross_entropy(model(inputs), targets).backward()
                optimiser.step()
        return model.eval()

    def result(self, confusion: torch.Tensor) -> TaskResult:
        true_positive = confusion.diag().double()
        union = confusion.sum(0).double() + confusion.sum(1).double() - true_positive
        present = union > 0
        iou = torch.where(present, true_positive / union.clamp_min(1), torch.full_like(union, float("nan")))
        total = int(confusion.sum())
        per_class = {name: {"iou": float(iou[i])} for i, name in enumerate(self.class_names) if present[i]}
        metrics = {
            "miou": float(iou[present].mean()) if present.any() else float("nan"),
            "pixel-accuracy": float(true_positive.sum() / total) if total else float("nan"),
        }
        descriptions = {
            "miou": "mean over classes (present in truth or prediction) of IoU, pixels pooled over all scored images",
            "pixel-accuracy": "fraction of scored pixels whose class is right",
        }
        return TaskResult(
            task=self.name, metrics=metrics, primary=self.primary_metric, n_items=total, unit="pixels",
            per_category=per_class, descriptions=descriptions,
        )


class _SegmentationScorer(Scorer):
    """Keeps only the sampled training pixels until every labelled image has arrived, fits the
    classifier, then accumulates the confusion matrix image by image."""

    def __init__(self, task: SegmentationTask) -> None:
        self.task = task
        self.waiting = set(task.data.train)
        self.inputs: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.predict: Callable[[torch.Tensor], torch.Tensor] | None = None
        count = len(task.class_names)
        self.counts = torch.zeros(count, count, dtype=torch.long)
        self.scored = 0

    def add(self, index: int, features: torch.Tensor) -> None:
        if index in self.waiting:
            inputs, targets = self.task.training_pixels(index, features)
            self.inputs.append(inputs)
            self.targets.append(targets)
            self.waiting.discard(index)
            if not self.waiting:
                self.predict = self.task.fit(torch.cat(self.inputs), torch.cat(self.targets))
                self.inputs, self.targets = [], []
            return
        if self.predict is None:
            raise InvalidInputError(f"image {index} came before every labelled training image: follow task.image_order()")
        self.counts += self.task.confusion(self.predict, index, features)
        self.scored += 1

    def result(self) -> TaskResult:
        if self.scored < len(self.task.data.test):
            raise InvalidInputError(f"only {self.scored} of {len(self.task.data.test)} test images were scored")
        return self.task.result(self.counts)
