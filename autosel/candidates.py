"""A search space's candidates: the model's activation points its include/exclude globs select,
each once per post-processing variant — computed once per space and passed down (the screen,
the plan, the search and its driver all read the same set).

Example:
    >>> catalogue = SpaceCatalogue.of(load_space("tiny"))
    >>> [point.id for point in catalogue.candidates][:2], catalogue.channels(["mid-vit-out"])
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from autosel import variants
from autosel.catalog import ActivationPoint, list_activations
from autosel.errors import UnknownActivationError, close_matches
from autosel.space import SearchSpace


@dataclass(frozen=True)
class SpaceCatalogue:
    """The activation points of a space's model at its image size, and the space's candidates.

    Attributes:
        points: the model's catalogue, by id, in forward order.
        screened: the points the space's globs select (no variants), in forward order.
        candidates: each screened point once per ``candidates.post`` variant (``ID`` or
            ``ID:drop-massive``): what the screen scores and the search chooses from.
    """

    points: dict[str, ActivationPoint]
    screened: tuple[ActivationPoint, ...]
    candidates: tuple[ActivationPoint, ...]

    @classmethod
    def of(cls, space: SearchSpace, points: Iterable[ActivationPoint] | None = None) -> SpaceCatalogue:
        """The catalogue of ``space``: measured from the model's config at the space's image size,
        or ``points`` when a loaded model's catalogue is at hand.

        Raises:
            UnknownActivationError: a glob matches no id, or the globs leave nothing.
        """
        found = list(points) if points is not None else list_activations(space.model, space.image_size)
        screened = select_candidates(found, space.candidates.include, space.candidates.exclude, space.model)
        return cls({p.id: p for p in found}, tuple(screened), tuple(variants.expand(screened, space.candidates.post)))

    @property
    def ids(self) -> list[str]:
        """The candidates' names, in forward order (variants after their point)."""
        return [point.id for point in self.candidates]

    def __getitem__(self, name: str) -> ActivationPoint:
        """The point of a catalogue id or of a candidate variant's name (``ID:post``)."""
        return self.by_name[name]

    @functools.cached_property
    def by_name(self) -> dict[str, ActivationPoint]:
        """Every point and candidate variant by name (what trials and cache entries spell)."""
        return {**self.points, **{point.id: point for point in self.candidates}}

    def channels(self, names: Iterable[str]) -> int:
        """Total channels of ``names`` (ids or variant names) at full width."""
        return sum(self[name].channels for name in names)


def select_candidates(
    catalogue: Sequence[ActivationPoint], include: Sequence[str], exclude: Sequence[str], model: str
) -> list[ActivationPoint]:
    """Points matching an ``include`` glob and no ``exclude`` glob, in forward order.

    Raises:
        UnknownActivationError: a glob matches no id (lists a few valid ids), or nothing is left.
    """
    ids = [point.id for point in catalogue]
    for kind, globs in (("include", include), ("exclude", exclude)):
        for glob in globs:
            if not fnmatch.filter(ids, glob):
                examples = close_matches(glob.replace("*", ""), ids) or ids[:2] + ids[len(ids) // 2 : len(ids) // 2 + 2]
                raise UnknownActivationError(
                    f"{kind} glob '{glob}' matches no activation of {model}; valid ids are like "
                    f"{', '.join(examples)} (see `autosel catalog --model {model}`)"
                )
    chosen = [p for p in catalogue if any(fnmatch.fnmatch(p.id, g) for g in include) and not any(fnmatch.fnmatch(p.id, g) for g in exclude)]
    if not chosen:
        raise UnknownActivationError(f"the include/exclude globs leave no candidate activation of {model}")
    return chosen
