"""Evidence that the tiny model learned: samples, and correspondence against controls.

    python experiments/tiny_model_signal.py [--search-pairs 80] [--heldout-pairs 200] [--out results/tiny]

1. a PNG grid of samples per category (DDIM, classifier-free guidance), ``OUT/samples.png``;
2. training-free semantic correspondence on shapes pairs, PCK@0.1 (target bbox, per point):
   for the trained model and its random-weight twin, the best (activation, timestep) is chosen
   on ``search`` pairs and scored on ``heldout`` pairs; raw RGB pixels and the same-position
   guess are the trivial baselines. The table is printed and written to ``OUT/signal.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from autosel.catalog import list_activations
from autosel.config import FeatureConfig
from autosel.data import CATEGORIES, ShapesDataset
from autosel.extract import FeatureExtractor
from autosel.models import load_pipeline
from autosel.tasks import match_prepared, pck, prepare_features

SIZE = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--control", default="tiny-random")
    parser.add_argument("--search-pairs", type=int, default=80)
    parser.add_argument("--heldout-pairs", type=int, default=200)
    parser.add_argument("--timesteps", default="10,50,150,300")
    parser.add_argument("--out", type=Path, default=Path("results/tiny"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    timesteps = [int(t) for t in args.timesteps.split(",")]

    save_samples(args.model, args.out / "samples.png")
    search = list(ShapesDataset("search", size=SIZE, length=400).pairs(args.search_pairs, seed=0))
    heldout = list(ShapesDataset("heldout", size=SIZE, length=1000).pairs(args.heldout_pairs, seed=0))

    rows = []
    for model in (args.model, args.control):
        best = choose_activation(model, search, timesteps)
        value = score(model, heldout, best[0], best[1])
        rows.append((f"{model}: {best[0]} @ t={best[1]}", value, best[2]))
    rows.append(("raw RGB pixels", score_rgb(heldout), None))
    rows.append(("same position (no features)", same_position(heldout), None))

    lines = [
        f"Correspondence on shapes pairs, PCK@0.1 (target bbox, per point), {SIZE} px; "
        f"activation and timestep chosen on {len(search)} search pairs, scored on {len(heldout)} held-out pairs.",
        "",
        "| features | held-out PCK@0.1 | search PCK@0.1 |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {name} | {100 * value:.1f} | {'' if chosen is None else f'{100 * chosen:.1f}'} |" for name, value, chosen in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    (args.out / "signal.md").write_text(text)


def save_samples(model: str, path: Path, per_category: int = 6) -> None:
    from PIL import Image

    pipeline = load_pipeline(model)
    rows = []
    for index, category in enumerate(CATEGORIES):
        generator = torch.Generator().manual_seed(index)
        result = pipeline(
            [f"a {category.name}"] * per_category, height=SIZE, width=SIZE, num_inference_steps=20,
            guidance_scale=4.0, generator=generator, output_type="np",
        )
        rows.append(np.concatenate(list(result.images), axis=1))
    grid = (np.concatenate(rows, axis=0) * 255).round().astype(np.uint8)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)
    print(f"wrote {path} (rows: {', '.join(c.name for c in CATEGORIES)})")


def _images(pairs) -> dict[int, object]:
    items = {}
    for pair in pairs:
        items[id(pair.source)] = pair.source
        items[id(pair.target)] = pair.target
    return items


def _extract(model: str, pairs, ids: list[str], timestep: int) -> dict[str, dict[int, torch.Tensor]]:
    """``{id: {image key: prepared C×64×64 map}}`` for every image of ``pairs``."""
    config = FeatureConfig.from_dict(
        {"model": {"name": model}, "extraction": {"image_size": SIZE}, "activations": [{"id": i, "timestep": timestep} for i in ids]}
    )
    extractor = FeatureExtractor(config, device="cpu", batch_size=32)
    items = _images(pairs)
    keys = list(items)
    features: dict[str, dict[int, torch.Tensor]] = {name: {} for name in ids}
    for start in range(0, len(keys), 32):
        chunk = keys[start : start + 32]
        batch = torch.stack([torch.from_numpy(items[k].image).permute(2, 0, 1).float() / 255 for k in chunk])
        for name, value in extractor(batch).items():
            prepared = prepare_features(value, (SIZE, SIZE)).half()
            features[name].update(zip(chunk, prepared))
    return features


def _pck_of(pairs, prepared: dict[int, torch.Tensor]) -> float:
    def predict(pair) -> torch.Tensor:
        return match_prepared(
            prepared[id(pair.source)].float(), prepared[id(pair.target)].float(),
            torch.from_numpy(pair.source.keypoints), (SIZE, SIZE), (SIZE, SIZE),
        )

    return _pck_with(pairs, predict)


def _pck_with(pairs, predict) -> float:
    """PCK@0.1 (target bbox, per point) of ``predict(pair) -> K×2 target points`` over ``pairs``."""
    correct = total = 0
    for pair in pairs:
        visible = torch.from_numpy(pair.source.visible & pair.target.visible)
        x1, y1, x2, y2 = pair.target.bbox
        hits, count = pck(predict(pair), torch.from_numpy(pair.target.keypoints), visible, max(x2 - x1, y2 - y1))
        correct, total = correct + hits, total + count
    return correct / max(total, 1)


def choose_activation(model: str, pairs, timesteps: list[int]) -> tuple[str, int, float]:
    candidates = [p.id for p in list_activations(model, SIZE) if not p.kind.endswith("-map")]
    best = ("", 0, -1.0)
    for timestep in timesteps:
        features = _extract(model, pairs, candidates, timestep)
        for name in candidates:
            value = _pck_of(pairs, features[name])
            if value > best[2]:
                best = (name, timestep, value)
        print(f"{model} t={timestep}: best so far {best[0]} @ {best[1]} = {100 * best[2]:.1f}")
    return best


def score(model: str, pairs, name: str, timestep: int) -> float:
    return _pck_of(pairs, _extract(model, pairs, [name], timestep)[name])


def score_rgb(pairs) -> float:
    items = _images(pairs)
    pixels = {key: prepare_features(torch.from_numpy(item.image).permute(2, 0, 1).float(), (SIZE, SIZE)) for key, item in items.items()}
    return _pck_of(pairs, pixels)


def same_position(pairs) -> float:
    return _pck_with(pairs, lambda pair: torch.from_numpy(pair.source.keypoints))


if __name__ == "__main__":
    main()
