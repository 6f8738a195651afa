"""Matching on virtually upsampled maps equals matching on the dense upsampled, normalised maps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from autosel.tasks import prepare_features
from autosel.tasks.matching import cell_norms, linear_resampling, point_queries, similarity_maps

SIZES = [  # (channels, map h, w, working H, W): upsampling, non-square, equal, downsampling
    (32, 16, 16, 64, 64), (6, 5, 7, 13, 9), (8, 16, 20, 16, 20), (4, 32, 32, 16, 16), (3, 1, 4, 8, 8),
]


def random_maps(count, channels, height, width, seed=0):
    return torch.randn(count, channels, height, width, generator=torch.Generator().manual_seed(seed))


def dense_upsampled(maps, working_size):
    rows, cols = linear_resampling(maps.shape[-2], working_size[0]), linear_resampling(maps.shape[-1], working_size[1])
    return rows @ maps @ cols.T


def test_linear_resampling_is_bilinear_interpolation():
    maps = random_maps(2, 3, 5, 7)
    expected = F.interpolate(maps, size=(11, 4), mode="bilinear", align_corners=False)
    assert torch.allclose(dense_upsampled(maps, (11, 4)), expected, atol=1e-6)


@pytest.mark.parametrize("channels,height,width,work_h,work_w", SIZES)
def test_cell_norms_equal_the_norms_of_the_upsampled_map(channels, height, width, work_h, work_w):
    maps = random_maps(3, channels, height, width)
    expected = dense_upsampled(maps, (work_h, work_w)).norm(dim=1)
    assert torch.allclose(cell_norms(maps, (work_h, work_w)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels,height,width,work_h,work_w", SIZES)
def test_point_queries_sample_the_upsampled_normalised_map(channels, height, width, work_h, work_w):
    maps = random_maps(3, channels, height, width)
    points = torch.tensor([[0.0, 0.0], [13.0, 9.0], [27.9, 15.9], [5.3, 2.2], [-3.0, 40.0]])  # the last is outside
    images = torch.tensor([0, 2, 1, 2, 0])
    queries = point_queries(maps, images, points, torch.tensor([[16, 28]] * len(points)), (work_h, work_w))
    prepared = prepare_features(maps, (work_h, work_w))
    grid = 2 * (points + 0.5) / torch.tensor([28.0, 16.0]) - 1
    expected = torch.stack([
        F.grid_sample(prepared[i][None], grid[k].view(1, 1, 1, 2), align_corners=False)[0, :, 0, 0]
        for k, i in enumerate(images.tolist())
    ])
    assert torch.allclose(queries, F.normalize(expected, dim=1), atol=1e-5)


@pytest.mark.parametrize("channels,height,width,work_h,work_w", SIZES)
def test_similarity_maps_are_cosines_with_every_upsampled_cell(channels, height, width, work_h, work_w):
    maps = random_maps(4, channels, height, width)
    queries = F.normalize(torch.randn(7, channels, generator=torch.Generator().manual_seed(1)), dim=1)
    targets = torch.tensor([3, 0, 3, 3, 1, 0, 3])  # uneven: target 2 has none, target 3 has four
    similarity = similarity_maps(queries, targets, maps, (work_h, work_w))
    expected = torch.einsum("nc,nchw->nhw", queries, prepare_features(maps, (work_h, work_w))[targets])
    assert similarity.shape == (7, work_h, work_w)
    assert torch.allclose(similarity, expected, atol=1e-5)
