"""The same features under each evaluation convention: PCK@0.1 (target bbox, per point) on the
200 held-out shapes pairs for the tiny model's best.yaml, its best single activation and the
legacy-tiny preset, with per-activation L2 on/off × bilinear/rounded-cell query. `autosel` is
L2 + bilinear (the default), `dift` is raw + rounded cell (`autosel evaluate --protocol dift`).

Run: python experiments/protocol_compare.py   (about 2 minutes on 2 CPU cores)
"""

from __future__ import annotations

from pathlib import Path

from autosel.config import FeatureConfig
from autosel.evaluation import evaluate_config
from autosel.extract import FeatureExtractor
from autosel.tasks import make_task

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "best.yaml (searched)": FeatureConfig.from_yaml(ROOT / "results" / "tiny" / "correspondence" / "best.yaml"),
    "best single: up-level1-repeat0-res-increment@50": FeatureConfig.from_dict(
        {"model": {"name": "tiny"}, "extraction": {"image_size": 64},
         "activations": [{"id": "up-level1-repeat0-res-increment", "timestep": 50}]}),
    "preset legacy-tiny": FeatureConfig.from_yaml(ROOT / "results" / "presets" / "legacy-tiny.yaml"),
}
VARIANTS = [("L2", "bilinear", "autosel (default)"), ("L2", "nearest", ""), ("raw", "bilinear", ""), ("raw", "nearest", "dift")]


def main() -> None:
    tasks = {query: make_task("correspondence", "shapes", "heldout", pairs=200, query=query) for query in ("bilinear", "nearest")}
    print("| config | " + " | ".join(f"{norm} + {query}" + (f" = **{name}**" if name else "") for norm, query, name in VARIANTS) + " |")
    print("| --- |" + " ---: |" * len(VARIANTS))
    for label, config in CONFIGS.items():
        cells = []
        for norm, query, _ in VARIANTS:
            changed = config.replace(aggregation={**config.aggregation.model_dump(), "l2_normalize": norm == "L2"})
            result = evaluate_config(FeatureExtractor(changed, batch_size=16), tasks[query], progress=False)
            cells.append(f"{100 * result.value:.1f}")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\n{tasks['bilinear'].data.name}: {len(tasks['bilinear'].data.pairs)} pairs, PCK@0.1 target bbox, per point")


if __name__ == "__main__":
    main()
