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


# -- the task: PCK variants on hand-built cases ---------------------------------------------

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from autosel.data import CorrespondenceData, KeypointPair  # noqa: E402
from autosel.tasks import CorrespondenceTask, metric_name  # noqa: E402


def one_pair(source_points, target_points, size=(40, 40), bbox=(10.0, 10.0, 20.0, 20.0), target_size=None, category="thing"):
    source_points = np.asarray(source_points, dtype=np.float32)
    return KeypointPair(
        source=0, target=1, category=category, source_points=source_points,
        target_points=np.asarray(target_points, dtype=np.float32), visible=np.ones(len(source_points), bool),
        source_size=size, target_size=target_size or size, target_bbox=bbox,
    )


def task_of(*pairs, working_size=40, **options):
    images = [np.zeros((1, 1, 3), np.uint8)] * 2
    renumbered = [
        KeypointPair(**{**p.__dict__, "source": 2 * i, "target": 2 * i + 1}) for i, p in enumerate(pairs)
    ]
    return CorrespondenceTask(CorrespondenceData("hand-built", images * len(pairs), renumbered), working_size=working_size, **options)


def test_perfect_features_score_one_on_every_variant():
    features = unique_features(40, 40)
    points = [[5.0, 7.0], [20.0, 30.0], [33.0, 2.0]]
    result = task_of(one_pair(points, points)).evaluate([features, features])
    assert set(result.metrics.values()) == {1.0} and len(result.metrics) == 12


def test_constant_features_send_every_point_to_one_place():
    constant = torch.ones(8, 10, 10)
    truth = [[0.0, 0.0], [3.0, 4.0], [9.0, 9.0]]  # errors 0, 5 and 12.7 from cell (0, 0)
    task = task_of(one_pair(truth, truth, size=(10, 10), bbox=(0.0, 0.0, 10.0, 10.0)), working_size=10)
    result = task.evaluate([constant, constant])
    assert result.metrics["pck@0.1/bbox/point"] == pytest.approx(1 / 3)
    assert result.metrics["pck@0.05/img/point"] == pytest.approx(1 / 3)


def test_bbox_and_image_normalisation_disagree_on_a_small_object():
    source = unique_features(40, 40)
    target = torch.roll(source, shifts=3, dims=2)  # every match lands 3 px to the right
    points = [[12.0, 12.0], [15.0, 18.0]]
    result = task_of(one_pair(points, points)).evaluate([source, target])
    assert result.metrics["pck@0.1/bbox/point"] == 0.0  # 3 px > 0.1 × 10 (bbox side)
    assert result.metrics["pck@0.1/img/point"] == 1.0  # 3 px ≤ 0.1 × 40 (image side)


def test_every_pck_variant_equals_a_dense_reference_on_random_errors():
    rng = np.random.default_rng(0)
    pairs = [one_pair(rng.uniform(0, 40, (n, 2)), rng.uniform(0, 40, (n, 2)), bbox=tuple(rng.uniform(0, 20, 2)) + tuple(rng.uniform(21, 40, 2)),
                      category=f"c{n % 3}") for n in range(1, 9)]
    task = task_of(*pairs)
    errors = [rng.uniform(0, 12, len(pair.visible)).astype(np.float32) for pair in task.data.pairs]
    result = task.result(errors)

    def reference(alpha, normalisation, averaging, category=None):
        per_pair = []
        for pair, pair_errors in zip(task.data.pairs, errors):
            if category is not None and pair.category != category:
                continue
            x1, y1, x2, y2 = pair.target_bbox
            length = max(x2 - x1, y2 - y1) if normalisation == "bbox" else max(pair.target_size)
            per_pair.append([float(error) <= alpha * length for error in pair_errors])
        if averaging == "point":
            points = [hit for hits in per_pair for hit in hits]
            return sum(points) / len(points)
        return sum(sum(hits) / len(hits) for hits in per_pair) / len(per_pair)

    for name, value in result.metrics.items():
        alpha, normalisation, averaging = float(name.split("@")[1].split("/")[0]), *name.split("/")[1:]
        assert value == pytest.approx(reference(alpha, normalisation, averaging)), name
        for category, metrics in result.per_category.items():
            assert metrics[name] == pytest.approx(reference(alpha, normalisation, averaging, category)), (name, category)


def test_per_point_and_per_image_averages_differ_as_computed_by_hand():
    features = unique_features(40, 40)
    good = one_pair([[5.0, 5.0]], [[5.0, 5.0]])
    mixed = one_pair([[5.0, 5.0], [20.0, 20.0], [30.0, 8.0]], [[5.0, 5.0], [20.0, 35.0], [10.0, 8.0]])
    result = task_of(good, mixed).evaluate([features] * 4)
    assert result.metrics["pck@0.1/bbox/point"] == pytest.approx(2 / 4)
    assert result.metrics["pck@0.1/bbox/image"] == pytest.approx((1 + 1 / 3) / 2)
    assert result.n_items == 4 and result.unit == "keypoints"


def test_a_resized_target_is_scored_in_its_own_pixels():
    source = unique_features(40, 40)
    points = np.array([[5.0, 7.0], [20.0, 30.0]])
    truth = 2 * points + 0.5  # the same places in an 80×80 copy of the image
    pair = one_pair(points, truth, target_size=(80, 80), bbox=(20.0, 20.0, 40.0, 40.0))
    result = task_of(pair).evaluate([source, source])  # same 40×40 feature map for both sizes
    assert result.metrics["pck@0.05/bbox/point"] == 1.0  # threshold 1 px of the 80-px image


def test_soft_argmax_averages_over_equally_good_neighbours():
    source = unique_features(10, 10, channels=8)
    target = torch.randn(8, 10, 10, generator=torch.Generator().manual_seed(5))
    target[:, 5, 5] = target[:, 5, 6] = source[:, 2, 2]
    points = torch.tensor([[2.0, 2.0]])
    hard = match_points(source, target, points, (10, 10), (10, 10))
    soft = match_points(source, target, points, (10, 10), (10, 10), soft_window=1, temperature=0.01)
    assert hard.tolist() == [[5.0, 5.0]]
    assert soft[0, 0].item() == pytest.approx(5.5, abs=1e-3) and soft[0, 1].item() == pytest.approx(5.0, abs=1e-3)


def test_every_result_names_its_normalisation_and_averaging():
    features = unique_features(40, 40)
    result = task_of(one_pair([[5.0, 5.0]], [[5.0, 5.0]])).evaluate([features, features])
    assert result.primary == metric_name(0.1, "bbox", "point") == "pck@0.1/bbox/point"
    assert "target bounding box" in result.descriptions["pck@0.1/bbox/point"]
    assert "per pair, then over pairs" in result.descriptions["pck@0.1/img/image"]


def test_results_break_down_by_category():
    features = unique_features(40, 40)
    a = one_pair([[5.0, 5.0]], [[5.0, 5.0]], category="cat")
    b = one_pair([[5.0, 5.0]], [[30.0, 30.0]], category="dog")
    result = task_of(a, b).evaluate([features] * 4)
    assert result.per_category["cat"]["pck@0.1/bbox/point"] == 1.0
    assert result.per_category["dog"]["pck@0.1/bbox/point"] == 0.0


def test_shapes_keypoints_are_found_exactly_with_keypoint_features():
    task = CorrespondenceTask.from_spec("shapes", pairs=40)
    points = {}
    for pair in task.data.pairs:
        points[pair.source], points[pair.target] = pair.source_points, pair.target_points
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    maps = []
    for index in range(len(task.images)):
        blobs = [torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 2) for x, y in points[index]]
        # the constant channel makes cosines fall off around each peak by more than the tie tolerance
        # (with 1e-3 they differed by ~1e-7 over several pixels: a tie at float32 precision)
        maps.append(torch.stack(blobs + [torch.full_like(xx, 0.05)]))
    assert task.evaluate(maps).metrics["pck@0.05/bbox/point"] == 1.0


def test_scores_do_not_depend_on_how_many_pairs_are_batched_together():
    task = CorrespondenceTask.from_spec("shapes", pairs=30)
    generator = torch.Generator().manual_seed(3)
    maps = [torch.randn(16, 8, 8, generator=generator).half() for _ in task.images]
    whole = task.evaluate(maps)
    scorer = task.scorer()
    scorer.batch_cells = 1  # every pair alone, as soon as both images are in
    for index in task.image_order():
        scorer.add(index, maps[index])
        assert len(scorer.raw) <= 2  # scored pairs' maps are dropped at once
    assert scorer.result().metrics == whole.metrics


def test_matching_points_agrees_with_the_dense_prepared_maps():
    from autosel.tasks import match_prepared, prepare_features

    source, target = unique_features(6, 9, channels=12, seed=1), unique_features(6, 9, channels=12, seed=2)
    points = torch.rand(30, 2, generator=torch.Generator().manual_seed(4)) * torch.tensor([36.0, 24.0])
    fast = match_points(source, target, points, (24, 36), (30, 30), working_size=(24, 36))
    dense = match_prepared(prepare_features(source, (24, 36)), prepare_features(target, (24, 36)), points, (24, 36), (30, 30))
    assert torch.equal(fast, dense)  # the two differ by ~1e-6 in each similarity: the tie rule absorbs that


def test_a_near_tie_goes_to_the_lowest_cell_whatever_the_rounding():
    from autosel.tasks.correspondence import TIE_TOLERANCE, best_points

    similarity = torch.zeros(2, 3, 4)
    similarity[:, 2, 3] = 0.8
    similarity[0, 1, 1] = 0.8 - TIE_TOLERANCE / 10  # rounding on one machine: the later cell a hair ahead
    similarity[1, 1, 1] = 0.8 + TIE_TOLERANCE / 10  # and on another: the earlier one
    predicted = best_points(similarity, torch.tensor([[3, 4], [3, 4]]))
    assert predicted.tolist() == [[1.0, 1.0], [1.0, 1.0]]  # (x, y) of cell (row 1, col 1) on both


def test_a_clearly_better_cell_wins_over_a_lower_index():
    from autosel.tasks.correspondence import TIE_TOLERANCE, best_points

    similarity = torch.zeros(1, 3, 4)
    similarity[0, 2, 3], similarity[0, 0, 0] = 0.8, 0.8 - 10 * TIE_TOLERANCE
    assert best_points(similarity, torch.tensor([[3, 4]])).tolist() == [[3.0, 2.0]]
