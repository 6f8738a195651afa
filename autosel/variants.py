"""Post-processing variants of a candidate: the same activation with another ``post``.

The screen and the search treat ``ID:drop-massive`` as a candidate of its own (written so in
sweep rows, cache keys and trials), so the search can choose massive-activation removal per
activation; a feature config spells it ``{id: ID, post: drop-massive}``. Plain ids are the
``none`` variant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

import torch

from autosel.catalog import ActivationPoint
from autosel.postprocess import post_process

SEPARATOR = ":"


def variant_id(name: str, post: str) -> str:
    """The candidate name of activation ``name`` post-processed by ``post``."""
    return name if post == "none" else f"{name}{SEPARATOR}{post}"


def split_variant(name: str) -> tuple[str, str]:
    """(catalogue id, post) of a candidate name."""
    base, _, post = name.partition(SEPARATOR)
    return base, post or "none"


def expand(points: Iterable[ActivationPoint], posts: Iterable[str]) -> list[ActivationPoint]:
    """Each point once per post variant (same shape, tap and depth; the variant's id)."""
    posts = list(posts)
    return [replace(point, id=variant_id(point.id, post)) for point in points for post in posts]


def with_variants(catalogue: Mapping[str, ActivationPoint], names: Iterable[str]) -> dict[str, ActivationPoint]:
    """``catalogue`` plus an entry for every variant name among ``names``."""
    full = dict(catalogue)
    for name in names:
        if name not in full:
            base, _ = split_variant(name)
            full[name] = replace(catalogue[base], id=name)
    return full


def base_ids(names: Iterable[str]) -> list[str]:
    """The distinct catalogue ids behind candidate names, in first-seen order."""
    return list(dict.fromkeys(split_variant(name)[0] for name in names))


def apply(value: torch.Tensor, name: str) -> torch.Tensor:
    """A captured B×C×H×W map of the base id, post-processed as candidate ``name`` says."""
    return post_process(value, split_variant(name)[1])
