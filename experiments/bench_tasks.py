"""Benchmark of the proxy tasks' inner loop: scoring one feature choice on cached features.

    python experiments/bench_tasks.py [--pairs 100] [--repeats 7]

Features of the trained tiny model are extracted once for the shapes search split (the
"cache"); then each task's ``evaluate`` is timed on them, for activations of different
widths and grids. Medians of ``--repeats`` runs, in seconds, with the task's score.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from autosel.config import FeatureConfig
from autosel.evaluation import extract_combined
from autosel.extract import FeatureExtractor
from autosel.tasks import CorrespondenceTask, SegmentationTask

CHOICES = (  # feature choices, each a list of (id, timestep): coarse to fine, then a concat
    [("up-level0-repeat0-res-out", 150)],
    [("up-level1-repeat0-res-increment", 150)],
    [("up-level2-repeat1-vit-out", 150)],
    [("down-level0-repeat0-vit-block0-self-q", 50)],
    [("up-level0-repeat0-res-out", 150), ("up-level1-repeat0-res-increment", 150), ("up-level2-repeat1-vit-out", 50)],
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    correspondence = CorrespondenceTask.from_spec("shapes", "search", pairs=args.pairs)
    segmentation = SegmentationTask.from_spec("shapes", "search")
    print(f"{args.pairs} pairs ({len(correspondence.images)} images); segmentation: "
          f"{len(segmentation.data.train)} train + {len(segmentation.data.test)} test images; {torch.get_num_threads()} threads")
    print(f"{'feature choice':45s} {'C×H×W':>12s} {'corr s':>8s} {'PCK@0.1':>8s} {'seg s':>8s} {'mIoU':>6s}")
    for choice in CHOICES:
        config = FeatureConfig.from_dict({
            "model": {"name": "tiny"}, "extraction": {"image_size": 64},
            "activations": [{"id": activation, "timestep": timestep} for activation, timestep in choice],
        })
        label = f"{choice[0][0]} t={choice[0][1]}" if len(choice) == 1 else f"concat of {len(choice)}"
        extractor = FeatureExtractor(config, device="cpu", batch_size=32)
        cached = extract_combined(extractor, correspondence.images, progress=False)
        cached_seg = extract_combined(extractor, segmentation.images, progress=False)
        corr_time, corr = _timed(lambda: correspondence.evaluate(cached), args.repeats)
        seg_time, seg = _timed(lambda: segmentation.evaluate(cached_seg), max(3, args.repeats // 2))
        shape = "×".join(str(s) for s in cached[0].shape)
        print(f"{label:45s} {shape:>12s} {corr_time:8.3f} {100 * corr.value:8.1f} {seg_time:8.3f} {100 * seg.value:6.1f}")


def _timed(function, repeats):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


if __name__ == "__main__":
    main()
