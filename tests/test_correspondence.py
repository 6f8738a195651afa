"""Nearest-neighbour correspondence and PCK."""

from __future__ import annotations

import torch

from autosel.tasks import match_points, pck


def unique_features(height=16, width=16, channels=64, seed=0):
    return torch.randn(channels, height, width, generator=torch.Generator().manual_seed(seed))


def test_identical_maps_match_every_point_to_itself():
    features = unique_features()
    points = torch.tensor([[0.0, 0.0], [5.0, 9.0], [15.0, 15.0], [3.0, 12.0]])
    predicted = match_points(features, features, points, (16, 16), (16, 16))
    assert torch.allclose(predicted, points)


def test_a_shifted_target_moves_the_matches_by_the_shift():
    features = unique_features(16, 20)
    target = torch.roll(features, shifts=(2, 3), dims=(1, 2))
    points = torch.tensor([[4.0, 5.0], [10.0, 8.0]])
    predicted = match_points(features, target, points, (16, 20), (16, 20))
    assert torch.allclose(predicted, points + torch.tensor([3.0, 2.0]))


def test_low_resolution_features_are_matched_in_image_pixels():
    features = unique_features(8, 8)
    points = torch.tensor([[12.0, 20.0]])  # in a 32×32 image whose features are 8×8
    predicted = match_points(features, features, points, (32, 32), (32, 32))
    assert (predicted - points).abs().max() <= 2.0


def test_pck_counts_visible_points_within_alpha_times_the_reference():
    truth = torch.tensor([[0.0, 0.0], [10.0, 10.0], [20.0, 20.0]])
    predicted = torch.tensor([[3.0, 4.0], [10.0, 16.0], [40.0, 40.0]])  # errors 5, 6, 28
    visible = torch.tensor([True, True, False])
    assert pck(predicted, truth, visible, reference_length=50, alpha=0.1) == (1, 2)
