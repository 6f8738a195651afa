"""Benchmark of the screening sweep against the naive per-candidate way, on the tiny model.

    python experiments/bench_sweep.py [--task correspondence|segmentation] [--pairs 100]
                                      [--timesteps 10,50,150,300,500] [--batch 16]

Side by side in one run, on the shapes search split: (a) the sweep — one denoiser forward
per (image batch, timestep) capturing every candidate of ``search_spaces/tiny.yaml``, each
scored by a streaming scorer — and (b) the naive way peers use: one extraction run per
(candidate, timestep), then the task. Prints forwards, wall time (split into extraction and
scoring for (b)), the largest score difference between the two (should be 0), the sweep's
peak RSS, and the activation cache's read throughput (RAM and memory-mapped disk). Both ways
are warmed up first (one candidate at one timestep each), so neither pays torch's first-call
costs inside its timing.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from autosel.cache import ActivationCache
from autosel.cache.fill import cache_keys, fill_cache
from autosel.evaluation import extract_combined
from autosel.extract import FeatureExtractor
from autosel.models import load_pipeline
from autosel.screen import run_sweep
from autosel.screen.sweep import base_config
from autosel.space import load_space
from autosel.tasks import make_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="correspondence", choices=["correspondence", "segmentation"])
    parser.add_argument("--pairs", type=int, default=100, help="correspondence pairs")
    parser.add_argument("--timesteps", default="10,50,150,300,500")
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    timesteps = [int(t) for t in args.timesteps.split(",")]
    space = load_space("tiny").replace(task=args.task, timesteps=timesteps, proxy={"pairs": args.pairs, "shapes_size": 64})
    pipeline = load_pipeline("tiny")
    task = make_task(space.task, space.dataset, "search", **space.task_options())
    warm = space.replace(timesteps=timesteps[:1], candidates={"include": ["up-level0-repeat0-res-out"], "exclude": []})
    with tempfile.TemporaryDirectory() as folder:
        run_sweep(warm, out=folder, pipeline=pipeline, batch_size=args.batch, progress=False, write_files=False)
    extractor = FeatureExtractor(base_config(space, "up-level0-repeat0-res-out", timesteps[0]), pipeline=pipeline, batch_size=args.batch)
    task.evaluate(extract_combined(extractor, task.images, progress=False))
    rss_before = _peak_rss_mb()

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        sweep = run_sweep(space, out=folder, pipeline=pipeline, batch_size=args.batch, progress=False, write_files=False)
        sweep_seconds = time.perf_counter() - started
    sweep_rss = _peak_rss_mb()
    primary = sweep.primary
    print(f"{args.task}: {len(task.images)} images, {primary['id'].nunique()} candidates × {len(timesteps)} timesteps "
          f"= {len(primary)} scores, batch {args.batch}")

    naive_forwards, extract_seconds, score_seconds, largest_difference = 0, 0.0, 0.0, 0.0
    for row in primary.itertuples():
        extractor = FeatureExtractor(base_config(space, row.id, int(row.timestep)), pipeline=pipeline, batch_size=args.batch)
        started = time.perf_counter()
        maps = extract_combined(extractor, task.images, progress=False)
        extract_seconds += time.perf_counter() - started
        started = time.perf_counter()
        value = task.evaluate(maps).value
        score_seconds += time.perf_counter() - started
        naive_forwards += extractor.forward_count
        largest_difference = max(largest_difference, abs(value - row.value))
    naive_seconds = extract_seconds + score_seconds

    print(f"{'':28s} {'forwards':>9s} {'wall s':>9s}")
    print(f"{'sweep (one forward design)':28s} {sweep.forwards:9d} {sweep_seconds:9.1f}")
    print(f"{'naive (one run per (id, t))':28s} {naive_forwards:9d} {naive_seconds:9.1f}   "
          f"(extraction {extract_seconds:.1f} s, scoring {score_seconds:.1f} s)")
    print(f"speed-up: {naive_seconds / sweep_seconds:.1f}× wall time, {naive_forwards / sweep.forwards:.0f}× fewer forwards; "
          f"largest score difference {largest_difference:.2g}")
    print(f"peak RSS: {rss_before:.0f} MB before the sweep, {sweep_rss:.0f} MB after it")

    best = sweep.top(12)
    pairs = [(row.id, int(row.timestep)) for row in best.itertuples()]
    extractor = FeatureExtractor(base_config(space, pairs[0][0], pairs[0][1]), pipeline=pipeline, batch_size=args.batch)
    with tempfile.TemporaryDirectory() as folder:
        keys = cache_keys(extractor, task, space.dataset, "search", pairs, resolution=16, projection=None, seed=0)
        arrays, _ = fill_cache(ActivationCache(Path(folder)), extractor, task, keys, progress=False)
        total = sum(a.nbytes for a in arrays.values())
        for label, budget in (("RAM", 10**10), ("memory-mapped disk", 0)):
            cache = ActivationCache(Path(folder), memory_budget=budget)
            for key in keys.values():
                cache.get(key)  # RAM: loaded once, then read; disk: mapped, read through the page cache
            started = time.perf_counter()
            checksum = sum(float(np.asarray(cache.get(key), dtype=np.float32).sum()) for key in keys.values())
            seconds = time.perf_counter() - started
            print(f"cache read ({label}): {total / 1e6:.1f} MB of {len(keys)} entries in {seconds * 1e3:.0f} ms "
                  f"= {total / seconds / 1e9:.2f} GB/s (float16 → float32, checksum {checksum:.3g})")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
