"""The label-free proxy: ``images:PATH`` folders of any images, synthetic views with exact ground
truth, and the label-free sweep and search (with a labelled confirmation)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import yaml
from fixture_data import small_search_space
from PIL import Image

from autosel.config import FeatureConfig
from autosel.data import ShapesDataset
from autosel.data.specs import DatasetSpec, load_plain_images
from autosel.data.views import ViewRecipe, make_view, select_points, warp_image, warp_points
from autosel.errors import DatasetError
from autosel.space import SearchSpace
from autosel.tasks import LabelFreeCorrespondenceTask, make_task
from autosel.tasks.label_free import LABEL_FREE_TASK


def shapes_folder(root, count=6):
    """``count`` shapes images as PNG files under ``root/a`` and ``root/b`` (a recursive folder)."""
    for index in range(count):
        folder = root / ("a" if index % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ShapesDataset("heldout", size=64)[index].image).save(folder / f"shape{index}.png")
    return root


@pytest.fixture
def mixed_folder(tmp_path):
    """Real-size photos of mixed sizes and modes (RGB, L, RGBA, CMYK JPEG) in subfolders, and one corrupt file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    (root / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (1200, 1600, 3), dtype=np.uint8)).save(root / "rgb.jpg")
    Image.fromarray(rng.integers(0, 256, (300, 200), dtype=np.uint8), mode="L").save(root / "sub" / "grey.png")
    Image.fromarray(rng.integers(0, 256, (90, 120, 4), dtype=np.uint8), mode="RGBA").save(root / "sub" / "alpha.png")
    Image.fromarray(rng.integers(0, 256, (640, 480, 3), dtype=np.uint8)).convert("CMYK").save(root / "sub" / "deeper" / "cmyk.jpg")
    (root / "sub" / "broken.jpg").write_bytes(b"not a jpeg at all")
    return root


def test_an_images_spec_reads_every_mode_and_size_as_rgb_in_both_roles(mixed_folder):
    search = load_plain_images(f"images:{mixed_folder}", "search")
    heldout = load_plain_images(f"images:{mixed_folder}", "heldout")

    images = search.images + heldout.images
    assert len(images) == 4  # RGB, L, RGBA, CMYK: the corrupt file is not one of them
    assert all(image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 for image in images)
    assert max(max(image.shape[:2]) for image in images) == 512  # the 1600-px photo, scaled down
    assert {image.shape[:2] for image in images} >= {(300, 200), (90, 120)}  # smaller ones kept as they are


def test_an_unreadable_file_is_listed_once_and_skipped(mixed_folder, caplog):
    with caplog.at_level(logging.WARNING, logger="autosel"):
        for role in ("search", "heldout", "search"):
            load_plain_images(f"images:{mixed_folder}", role)

    listed = [record.getMessage() for record in caplog.records if "broken.jpg" in record.getMessage()]
    assert len(listed) == 1 and "skipped 1 unreadable" in listed[0]


def test_a_folder_with_fewer_than_two_readable_images_is_refused_naming_it(tmp_path):
    Image.new("RGB", (32, 32)).save(tmp_path / "only.png")

    with pytest.raises(DatasetError, match=f"{tmp_path}: 1 readable image"):
        load_plain_images(f"images:{tmp_path}", "search")


def test_an_images_spec_parses_and_prints_back():
    assert str(DatasetSpec.parse("images:/data/photos")) == "images:/data/photos"


def test_a_known_warp_maps_a_point_to_where_the_view_shows_it():
    image = np.zeros((48, 64, 3), dtype=np.uint8)
    image[20, 30] = 255  # one bright pixel at (x, y) = (30, 20)
    rotate = np.array([[0.0, -1.0, 60.0], [1.0, 0.0, 2.0], [0.0, 0.0, 1.0]])  # a quarter turn, then a shift

    view = warp_image(image, rotate)

    row, col = np.unravel_index(int(view[..., 0].argmax()), view.shape[:2])
    assert np.allclose(warp_points(rotate, [[30, 20]]), [[col, row]])
    assert (col, row) == (40, 32)


def test_a_seeded_view_is_its_image_under_its_matrix():
    image = ShapesDataset("search", size=64)[0].image
    view = make_view(image, ViewRecipe(rotation=30, scale=0.2, shift=0.1, photometric="none"), np.random.default_rng(3))

    points = select_points(image, 16, "salient")
    moved = np.round(warp_points(view.matrix, points)).astype(int)
    kept = (moved[:, 0] >= 0) & (moved[:, 0] < 64) & (moved[:, 1] >= 0) & (moved[:, 1] < 64)
    source = image[points[kept, 1].astype(int), points[kept, 0].astype(int)].astype(int)
    seen = view.image[moved[kept, 1], moved[kept, 0]].astype(int)
    assert kept.sum() >= 8 and np.median(np.abs(source - seen)) <= 12  # bilinear blur at edges, nothing more


def position_features(task: LabelFreeCorrespondenceTask) -> list[torch.Tensor]:
    """Oracle features: each view's map holds, at every pixel, its source's (x, y) (the inverse
    warp); each original's holds its own (x, y). Nearest neighbours then follow the warp exactly."""
    maps = {}
    for pair in task.data.pairs:
        height, width = pair.source_size
        rows, cols = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
        grid = np.stack([cols.ravel(), rows.ravel()], 1)
        matrix = fit_affine(pair.source_points, pair.target_points)
        source_of_view = warp_points(np.linalg.inv(matrix), grid)
        for index, coords in ((pair.source, grid), (pair.target, source_of_view)):
            encoded = np.concatenate([np.sin(coords / 4), np.cos(coords / 4), np.sin(coords / 9), np.cos(coords / 9)], 1)
            maps[index] = torch.from_numpy(encoded.T.reshape(-1, height, width)).float()
    return [maps[index] for index in range(len(task.images))]


def fit_affine(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 3×3 affine matrix taking ``source`` points to ``target`` (least squares)."""
    design = np.concatenate([source, np.ones((len(source), 1))], 1)
    solution, *_ = np.linalg.lstsq(design, target, rcond=None)
    return np.vstack([solution.T, [0.0, 0.0, 1.0]])


def test_features_that_follow_the_warp_score_perfect_label_free_pck():
    images = [ShapesDataset("search", size=32)[index].image for index in range(3)]
    task = LabelFreeCorrespondenceTask(images, "shapes", views=2, point_count=8, working_size=32)

    result = task.evaluate(position_features(task))

    assert result.metrics["label-free-pck@0.05/img/point"] == 1.0
    assert result.primary == "label-free-pck@0.1/img/point"
    assert all(name.startswith("label-free-pck@") for name in result.metrics)


def test_the_views_depend_only_on_the_seed():
    images = [ShapesDataset("search", size=32)[index].image for index in range(2)]
    first, again = (LabelFreeCorrespondenceTask(images, "shapes", seed=5) for _ in range(2))
    other = LabelFreeCorrespondenceTask(images, "shapes", seed=6)

    assert all(np.array_equal(a, b) for a, b in zip(first.images, again.images))
    assert not np.array_equal(first.images[1], other.images[1])


def test_correspondence_on_plain_images_is_the_label_free_task(tmp_path):
    space = SearchSpace(model="tiny", dataset=f"images:{tmp_path}")

    assert space.task == LABEL_FREE_TASK
    assert space.confirmation() == (LABEL_FREE_TASK, f"images:{tmp_path}")


def test_a_labelled_confirmation_dataset_confirms_with_labelled_correspondence(tmp_path):
    space = SearchSpace.from_dict({"model": "tiny", "dataset": f"images:{tmp_path}", "search": {"confirm_dataset": "shapes"}})

    assert space.confirmation() == ("correspondence", "shapes")


def test_the_label_free_task_takes_the_space_pairs_as_image_view_pairs(tmp_path):
    space = SearchSpace(model="tiny", dataset=f"images:{shapes_folder(tmp_path, 8)}").replace(proxy={"pairs": 3})

    task = make_task(space.task, space.dataset, "search", **space.task_options())

    assert len(task.data.pairs) == 3 and len(task.images) == 6


def test_a_label_free_sweep_runs_from_the_cli_and_says_it_is_label_free(run_cli, tmp_path):
    folder = shapes_folder(tmp_path / "images", 6)

    result = run_cli("sweep", "--model", "tiny", "--dataset", f"images:{folder}", "--timesteps", "50",
                     "--include", "up-level1-repeat0-res-*", "--pairs", "3", "--out", tmp_path / "out", "--no-progress")

    assert result.returncode == 0, result.stderr
    assert "label-free-pck@0.1/img/point" in result.stdout
    written = list((tmp_path / "out" / "tiny" / LABEL_FREE_TASK).glob("sweep-*.csv"))
    assert len(written) == 1 and "label-free-pck@0.1/img/point" in written[0].read_text()


@pytest.mark.slow
def label_free_space_file(tmp_path, trials: int):
    """A small search space file on an ``images:`` folder of 8 shapes images; (the file, the folder)."""
    folder = shapes_folder(tmp_path / "images", 8)
    space = {**small_search_space(trials=trials), "dataset": f"images:{folder}"}
    space["search"] = {**space["search"], "top_m": 2, "confirm_top": 1}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path, folder


def test_a_label_free_search_with_a_labelled_confirmation_writes_labelled_pck(run_cli, tmp_path):
    path, folder = label_free_space_file(tmp_path, trials=3)

    result = run_cli("search", "--space", path, "--confirm-dataset", "shapes", "--pairs", "4", "--workers", "0",
                     "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache", "--no-progress")

    assert result.returncode == 0, result.stderr
    score = FeatureConfig.from_yaml(tmp_path / "out" / "tiny" / LABEL_FREE_TASK / "best.yaml").score
    assert (score.task, score.dataset, score.split, score.metric) == ("correspondence", "shapes", "heldout", "pck@0.1/bbox/point")
    assert (score.search_metric, score.search_dataset) == ("label-free-pck@0.1/img/point", f"images:{folder}")


@pytest.mark.slow
def test_a_label_free_search_without_labels_confirms_label_free_on_held_out_images(run_cli, tmp_path):
    path, _ = label_free_space_file(tmp_path, trials=2)

    result = run_cli("search", "--space", path, "--pairs", "4", "--workers", "0", "--out", tmp_path / "out",
                     "--cache-dir", tmp_path / "cache", "--no-progress")

    assert result.returncode == 0, result.stderr
    score = FeatureConfig.from_yaml(tmp_path / "out" / "tiny" / LABEL_FREE_TASK / "best.yaml").score
    assert (score.task, score.split, score.metric) == (LABEL_FREE_TASK, "heldout", "label-free-pck@0.1/img/point")
    assert score.search_metric is None  # the search and the confirmation measure the same thing
