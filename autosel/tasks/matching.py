"""Nearest-neighbour matching on upsampled feature maps, many pairs at once, without ever
materialising the upsampled maps.

Correspondence compares unit query vectors with every cell of the target map after bilinear
upsampling to a working grid and L2 normalisation (:func:`autosel.tasks.prepare_features`).
Both steps commute with the dot product, so for a target map X and an upsampling
``U = R · X · Cᵀ``:

* the numerator ``q · U[u, v]`` is the low-resolution similarity ``q · X`` upsampled, which
  costs (points × C × h·w) instead of (points × C × H·W) plus the upsampling of X itself;
* the denominator ``‖U[u, v]‖`` needs only the dot products of neighbouring low-resolution
  cells, because each working cell mixes at most 2 × 2 of them (see :func:`cell_norms`).

The result is the same cosine similarity as the dense way up to float rounding; the tests
hold the two together.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from autosel.numerics import l2_normalize


@functools.lru_cache(maxsize=64)
def linear_resampling(size_in: int, size_out: int) -> torch.Tensor:
    """The size_out×size_in matrix of 1-D linear resampling (align_corners=False); bilinear
    resampling of a map is ``rows @ map @ cols.T``. Each row mixes at most two neighbours."""
    identity = torch.eye(size_in)[None]  # one batch, size_in channels: the unit impulses
    return F.interpolate(identity, size=size_out, mode="linear", align_corners=False)[0].T.contiguous()


def resample(maps: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``rows @ map @ cols.T`` for each of the B×h×w ``maps``, as two large matrix products
    rather than B small ones. Returns a B×H×W view of an H×B×W tensor (not contiguous)."""
    count, height, width = maps.shape
    tall = rows @ maps.transpose(0, 1).reshape(height, count * width)  # H×(B·w)
    wide = tall.view(-1, width) @ cols.T  # (H·B)×W
    return wide.view(len(rows), count, len(cols)).transpose(0, 1)


def cell_norms(maps: torch.Tensor, working_size: tuple[int, int]) -> torch.Tensor:
    """B×H×W L2 norms over channels of B×C×h×w ``maps`` bilinearly resampled to ``working_size``.

    ``‖Σ R[u,a] C[v,b] X[:,a,b]‖²`` expands into the Gram entries of cells that share a
    working cell — a cell with itself, its right, lower and two diagonal neighbours — each
    weighted by products of adjacent entries of the resampling matrices R and C. Laid out as
    one (2h-1)×(2w-1) map per image, that is a single resampling with [R∘R | R⋅R→] and
    [C∘C | C⋅C→].
    """
    maps = maps.float()
    count, _, height, width = maps.shape
    rows = linear_resampling(height, working_size[0])
    cols = linear_resampling(width, working_size[1])
    grams = maps.new_empty(count, 2 * height - 1, 2 * width - 1)
    grams[:, :height, :width] = (maps * maps).sum(1)
    grams[:, :height, width:] = 2 * (maps[..., :, :-1] * maps[..., :, 1:]).sum(1)
    grams[:, height:, :width] = 2 * (maps[..., :-1, :] * maps[..., 1:, :]).sum(1)
    grams[:, height:, width:] = 2 * (
        (maps[..., :-1, :-1] * maps[..., 1:, 1:]).sum(1) + (maps[..., :-1, 1:] * maps[..., 1:, :-1]).sum(1)
    )
    row_terms = torch.cat([rows * rows, rows[:, :-1] * rows[:, 1:]], 1)
    col_terms = torch.cat([cols * cols, cols[:, :-1] * cols[:, 1:]], 1)
    return resample(grams, row_terms, col_terms).clamp_min_(0).sqrt_()


def point_queries(
    maps: torch.Tensor,
    image_of_point: torch.Tensor,
    points: torch.Tensor,
    image_sizes: torch.Tensor,
    working_size: tuple[int, int],
    query: str = "bilinear",
) -> torch.Tensor:
    """N×C unit query vectors: each map resampled to ``working_size``, normalised per cell, and
    sampled bilinearly at its points (cells outside the grid count as zeros, as in grid_sample),
    or with ``query="nearest"`` read at the point's rounded working cell (DIFT's convention).

    Args:
        maps: M×C×h×w feature maps.
        image_of_point: N indices into ``maps``.
        points: N×2 (x, y) pixel coordinates in their own image.
        image_sizes: N×2 (height, width) of each point's image in pixels.
        working_size: (H, W) of the working grid.
    """
    maps = maps.float()
    channels, height, width = maps.shape[1:]
    work_h, work_w = working_size
    x = (points[:, 0].float() + 0.5) * work_w / image_sizes[:, 1].float() - 0.5
    y = (points[:, 1].float() + 0.5) * work_h / image_sizes[:, 0].float() - 0.5
    if query == "nearest":  # the rounded cell alone: weight 1 on the first of the four corners
        x0, y0 = x.round().clamp(0, work_w - 1), y.round().clamp(0, work_h - 1)
        fx, fy = torch.zeros_like(x), torch.zeros_like(y)
    elif query == "bilinear":
        x0, y0 = x.floor(), y.floor()
        fx, fy = x - x0, y - y0
    else:
        raise ValueError(f"query must be bilinear or nearest, got {query!r}")
    cell_x = torch.stack([x0, x0 + 1, x0, x0 + 1], 1).long()  # N×4 working cells around each point
    cell_y = torch.stack([y0, y0, y0 + 1, y0 + 1], 1).long()
    weights = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], 1)
    weights = weights * ((cell_x >= 0) & (cell_x < work_w) & (cell_y >= 0) & (cell_y < work_h))
    row_pick, row_w = _two_taps(linear_resampling(height, work_h)[cell_y.clamp(0, work_h - 1)])  # N×4×2
    col_pick, col_w = _two_taps(linear_resampling(width, work_w)[cell_x.clamp(0, work_w - 1)])
    # each working cell mixes ≤ 2×2 map cells: gather those instead of touching whole maps
    cell_index = (row_pick[..., :, None] * width + col_pick[..., None, :]).reshape(len(points), 16)  # 4 corners × 2×2
    by_cell = maps.reshape(len(maps), channels, height * width).transpose(1, 2)  # M×(h·w)×C view
    gathered = by_cell[image_of_point[:, None], cell_index].view(len(points), 4, 4, channels)
    mixing = (row_w[..., :, None] * col_w[..., None, :]).view(len(points), 4, 4, 1)
    cells = (gathered * mixing).sum(2)
    cells = l2_normalize(cells, dim=2)  # N×4×C: the four normalised working cells
    return l2_normalize((weights[..., None] * cells).sum(1), dim=1)


def similarity_maps(
    queries: torch.Tensor, target_of_query: torch.Tensor, maps: torch.Tensor, working_size: tuple[int, int]
) -> torch.Tensor:
    """N×H×W cosine similarities of N unit ``queries`` with every working cell of their target.

    Args:
        queries: N×C unit vectors.
        target_of_query: N indices into ``maps``.
        maps: T×C×h×w target feature maps (raw, low resolution).
        working_size: (H, W) the maps are (virtually) resampled to.
    """
    maps = maps.float()
    count, channels, height, width = maps.shape
    # queries grouped by target, padded to the busiest target: one batched product at low resolution
    per_target = torch.bincount(target_of_query, minlength=count)
    order = torch.argsort(target_of_query, stable=True)
    first = torch.cumsum(per_target, 0) - per_target  # where each target's queries start in `order`
    slot = torch.empty_like(order)
    slot[order] = torch.arange(len(order)) - first[target_of_query[order]]  # rank among its target's queries
    padded = queries.new_zeros(count, int(per_target.max()), channels)
    padded[target_of_query, slot] = queries
    low = torch.bmm(padded, maps.reshape(count, channels, height * width))[target_of_query, slot]  # N×(h·w)
    rows = linear_resampling(height, working_size[0])
    cols = linear_resampling(width, working_size[1])
    used, target_slot = torch.unique(target_of_query, return_inverse=True)  # norms of targets only
    inverse_norms = cell_norms(maps[used], working_size).clamp_min_(1e-12).reciprocal_()
    return inverse_norms[target_slot].mul_(resample(low.view(-1, height, width), rows, cols))


def _two_taps(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (≤ 2 adjacent) nonzero taps of resampling-matrix rows ``weights`` (…×n): their
    indices and weights, …×2 each (a second tap past the edge gets weight 0)."""
    size = weights.shape[-1]
    low = (weights != 0).float().argmax(-1)
    picks = torch.stack([low, (low + 1).clamp(max=size - 1)], -1)
    taps = weights.gather(-1, picks)
    taps[..., 1] = taps[..., 1] * (picks[..., 1] != picks[..., 0])
    return picks, taps
