"""Small datasets written in the real on-disk formats (SPair-71k, image + label folders).

Their images and annotations come from the built-in shapes generator, so the files carry real
ground truth: features of a good model find the keypoints and parts in them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from autosel.data import ShapesDataset, load_segmentation, shapes_class_names


def write_spair(root: Path, pairs_per_split: int = 6, categories: tuple[str, ...] = ("house", "tree", "car"), scale=(1.5, 1.0)) -> Path:
    """An SPair-71k-format folder: JPEGImages, ImageAnnotation, PairAnnotation/{trn,val,test}.

    Images are shapes images stretched by ``scale`` = (x, y), so that width ≠ height.
    """
    for split_number, split in enumerate(("trn", "val", "test")):
        shapes = ShapesDataset("search" if split != "test" else "heldout", size=64)
        written = 0
        for pair in shapes.pairs(200, seed=split_number):
            category = pair.source.category
            if category not in categories:
                continue
            names = []
            for item, index in ((pair.source, pair.source_index), (pair.target, pair.target_index)):
                name = f"{split}_{index:04d}"
                _write_image(root, category, name, item, scale)
                names.append(name)
            both = pair.source.visible & pair.target.visible
            record = {
                "src_imname": f"{names[0]}.jpg",
                "trg_imname": f"{names[1]}.jpg",
                "category": category,
                "src_imsize": [round(64 * scale[0]), round(64 * scale[1]), 3],
                "trg_imsize": [round(64 * scale[0]), round(64 * scale[1]), 3],
                "src_bndbox": _scaled_box(pair.source.bbox, scale),
                "trg_bndbox": _scaled_box(pair.target.bbox, scale),
                "src_kps": _scaled_points(pair.source.keypoints[both], scale),
                "trg_kps": _scaled_points(pair.target.keypoints[both], scale),
                "kps_ids": [str(i) for i in np.flatnonzero(both)],
            }
            folder = root / "PairAnnotation" / split
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{written:06d}-{names[0]}-{names[1]}:{category}.json").write_text(json.dumps(record))
            written += 1
            if written == pairs_per_split:
                break
    return root


def _write_image(root: Path, category: str, name: str, item, scale) -> None:
    folder = root / "JPEGImages" / category
    folder.mkdir(parents=True, exist_ok=True)
    size = (round(64 * scale[0]), round(64 * scale[1]))
    Image.fromarray(item.image).resize(size, Image.BILINEAR).save(folder / f"{name}.jpg", quality=95)
    annotations = root / "ImageAnnotation" / category
    annotations.mkdir(parents=True, exist_ok=True)
    (annotations / f"{name}.json").write_text(json.dumps({"filename": f"{name}.jpg", "category": category}))


def _scaled_box(box, scale) -> list[int]:
    x1, y1, x2, y2 = box
    return [int(x1 * scale[0]), int(y1 * scale[1]), int(np.ceil(x2 * scale[0])) - 1, int(np.ceil(y2 * scale[1])) - 1]


def _scaled_points(points: np.ndarray, scale) -> list[list[float]]:
    return [[float((x + 0.5) * scale[0] - 0.5), float((y + 0.5) * scale[1] - 0.5)] for x, y in points]


def write_label_folder(root: Path, train: int = 4, test: int = 8) -> Path:
    """An ``images/`` + ``labels/`` folder of shapes images with part labels, ``classes.txt``
    and a ``train.txt`` list naming the first ``train`` stems."""
    data = load_segmentation("shapes", "search", train_images=train, test_images=test)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    stems = []
    for number, (image, label) in enumerate(zip(data.images, data.labels)):
        stem = f"img{number:03d}"
        Image.fromarray(image).save(root / "images" / f"{stem}.jpg", quality=95)
        Image.fromarray(label.astype(np.uint8), mode="L").save(root / "labels" / f"{stem}.png")
        stems.append(stem)
    (root / "classes.txt").write_text("\n".join(shapes_class_names()) + "\n")
    (root / "train.txt").write_text("\n".join(stems[:train]) + "\n")
    return root


def small_search_space(trials: int = 8) -> dict:
    """A search space on the tiny model small enough for tests: 14 candidates × 2 timesteps,
    16 pairs, top 4 kept, at most 2 activations."""
    return {
        "model": "tiny", "image_size": 64, "timesteps": [50, 300],
        "candidates": {"include": ["up-level0-*", "up-level1-repeat0-*"], "exclude": ["*-map"]},
        "proxy": {"pairs": 16},
        "search": {"top_m": 4, "timesteps_per_candidate": 2, "max_activations": 2, "channel_budget": 160, "trials": trials,
                   "cache_resolution": 8, "cache_dim": None, "confirm_top": 2},
    }
