"""Training-free nearest neighbours vs the seed codebase's trained head (`correspondence-trained`)
on the same features: PCK@0.1 (target bbox, per point) on 200 held-out shapes pairs, the head
trained on 200 pairs of the shapes train split with gdf's defaults (2 epochs, AdamW 5e-4).

Run: python experiments/trained_head.py   (about 3 minutes on 2 CPU cores)
"""

from __future__ import annotations

import time

from protocol_compare import CONFIGS as PROTOCOL_CONFIGS  # the same three configs

from autosel.evaluation import evaluate_config
from autosel.extract import FeatureExtractor
from autosel.tasks import make_task

CONFIGS = {("best.yaml (searched, training-free)" if "best.yaml" in label else label): config
           for label, config in PROTOCOL_CONFIGS.items()}


def main() -> None:
    print("| config | training-free (`correspondence`) | trained head (`correspondence-trained`) | head training |")
    print("| --- | ---: | ---: | ---: |")
    for label, config in CONFIGS.items():
        extractor = FeatureExtractor(config, batch_size=16)
        free = evaluate_config(extractor, make_task("correspondence", "shapes", "heldout", pairs=200), progress=False)
        started = time.perf_counter()
        task = make_task("correspondence-trained", "shapes", "heldout", pairs=200)
        trained = evaluate_config(extractor, task, progress=False)
        seconds = time.perf_counter() - started
        print(f"| {label} | {100 * free.value:.1f} | {100 * trained.value:.1f} | {len(task.losses)} steps, "
              f"loss {sum(task.losses[:20]) / 20:.2f} → {sum(task.losses[-20:]) / 20:.2f}, {seconds:.0f} s |")
    print("\nprotocol autosel (per-activation L2, bilinear query) for both; 200 held-out pairs, 200 training pairs")


if __name__ == "__main__":
    main()
