"""Label-free correspondence: each image matched against seeded synthetic views of itself.

No annotation is needed: a view is the image under a known random warp and photometric change
(:mod:`autosel.data.views`), so every chosen source point has an exact match. Matching and
scoring are the correspondence task's (nearest neighbour on upsampled, normalised maps; PCK at
the same thresholds, normalised by the longer side of the view), but every metric is named
``label-free-pck@α/img/…`` so it is never mistaken for PCK on labelled pairs.

The rule (warp strength, photometric change, point choice, views per image) was chosen by
measurement against labelled sweeps of the tiny models and frozen before it was checked on
images it was not tuned on: ``experiments/label_free.py``, ``results/label-free.md``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autosel.data.records import CorrespondenceData, KeypointPair
from autosel.data.specs import load_plain_images
from autosel.data.views import ViewRecipe, inside, make_view, select_points, warp_points
from autosel.errors import InvalidInputError
from autosel.tasks.base import TaskResult, register_task
from autosel.tasks.correspondence import ALPHAS, AVERAGINGS, CorrespondenceTask, metric_name

PREFIX = "label-free-"
FROZEN_RULE: dict[str, Any] = {
    "views": 1, "rotation": 40.0, "scale": 0.3, "shift": 0.15, "photometric": "hard", "points": "salient", "point_count": 24,
}
"""The proxy's rule as frozen by ``experiments/label_free.py`` (the task's defaults)."""


def label_free_metric(alpha: float, averaging: str = "point") -> str:
    """The name of a label-free PCK metric, e.g. ``label-free-pck@0.1/img/point``."""
    return PREFIX + metric_name(alpha, "img", averaging)


LABEL_FREE_TASK = "correspondence-label-free"
"""The task a correspondence search on plain images (``images:PATH``) runs."""


@register_task(LABEL_FREE_TASK)
class LabelFreeCorrespondenceTask(CorrespondenceTask):
    """Correspondence between each image and ``views`` seeded synthetic views of it, scored
    against the known warps (see the module docstring).

    Args:
        images: H×W×3 uint8 images (any sizes).
        name: what the images are (shown in results).
        views: synthetic views per image; each (image, view) is one scored pair.
        rotation, scale, shift, photometric: the :class:`~autosel.data.views.ViewRecipe`.
        points: source points by ``salient`` or ``grid`` (:func:`~autosel.data.views.select_points`).
        point_count: source points per image (those whose match leaves the view are not scored).
        seed: seed of the views (image ``i``'s views depend only on the seed and ``i``).
        **options: the correspondence task's matching options (``working_size``, ``soft_window``…).

    Example:
        >>> task = LabelFreeCorrespondenceTask.from_spec("images:photos", role="search", pairs=50)
        >>> task.evaluate(features).metrics["label-free-pck@0.1/img/point"]
    """

    primary_metric = label_free_metric(0.1)
    proxy_options = ("pairs", "shapes_size")  # plain images have no categories (--pairs-per-category is the confirmation's)

    def __init__(
        self,
        images: list[np.ndarray],
        name: str = "images",
        views: int = FROZEN_RULE["views"],
        rotation: float = FROZEN_RULE["rotation"],
        scale: float = FROZEN_RULE["scale"],
        shift: float = FROZEN_RULE["shift"],
        photometric: str = FROZEN_RULE["photometric"],
        points: str = FROZEN_RULE["points"],
        point_count: int = FROZEN_RULE["point_count"],
        seed: int = 0,
        alphas: tuple[float, ...] = ALPHAS,
        **options: Any,
    ) -> None:
        if views < 1:
            raise InvalidInputError(f"views must be at least 1, got {views}")
        if not images:
            raise InvalidInputError(f"dataset {name} has no images to make views of")
        recipe = ViewRecipe(rotation, scale, shift, photometric)
        data = synthetic_pairs(images, name, views, recipe, points, point_count, seed)
        super().__init__(data, alphas=alphas, **options)

    @classmethod
    def from_spec(  # type: ignore[override]
        cls,
        dataset: str,
        role: str = "search",
        pairs: int | None = None,
        shapes_size: int = 64,
        seed: int = 0,
        views: int = FROZEN_RULE["views"],
        **options: Any,
    ) -> LabelFreeCorrespondenceTask:
        """The task on the images of ``dataset`` (``images:PATH`` or ``shapes``) in ``role``:
        ``pairs`` (image, view) pairs at most (default 100), so ⌈pairs / views⌉ images."""
        count = math.ceil((pairs or 100) / max(views, 1))
        found = load_plain_images(dataset, role, count, shapes_size)
        return cls(found.images, found.name, views=views, seed=seed, **options)

    def result(self, errors: list[np.ndarray]) -> TaskResult:
        """The correspondence result with only image-normalised metrics, each renamed ``label-free-…``."""
        labelled = super().result(errors)

        def renamed(metrics: dict[str, float]) -> dict[str, float]:
            return {PREFIX + name: value for name, value in metrics.items() if "/img/" in name}

        descriptions = {
            label_free_metric(a, v): f"label-free PCK@{a:g} against the known warp of a synthetic view of each image: "
                                     f"error ≤ {a:g} × the longer side of the view, averaged {AVERAGINGS[v]}"
            for a in self.alphas for v in AVERAGINGS
        }
        return TaskResult(task=self.name, metrics=renamed(labelled.metrics), primary=self.primary_metric,
                          n_items=labelled.n_items, unit="points", descriptions=descriptions)


def synthetic_pairs(
    images: list[np.ndarray], name: str, views: int, recipe: ViewRecipe, points: str, point_count: int, seed: int
) -> CorrespondenceData:
    """Each image followed by its ``views`` views, and one pair (image → view) per view whose
    target points are the source points under the view's warp (visible: inside the view)."""
    pool: list[np.ndarray] = []
    pairs = []
    for number, image in enumerate(images):
        size = (int(image.shape[0]), int(image.shape[1]))
        sources = select_points(image, point_count, points)
        rng = np.random.default_rng([seed, number])
        source_index = len(pool)
        pool.append(image)
        for view_number in range(views):
            view = make_view(image, recipe, rng)
            targets = warp_points(view.matrix, sources)
            pairs.append(KeypointPair(
                source=source_index, target=len(pool), category="views", source_points=sources, target_points=targets,
                visible=inside(targets, size), source_size=size, target_size=size,
                target_bbox=(0.0, 0.0, float(size[1]), float(size[0])), name=f"{name} image {number} view {view_number}",
            ))
            pool.append(view.image)
    return CorrespondenceData(name=f"{name} (label-free views)", images=pool, pairs=pairs)
