"""Benchmark of the capture hooks on the built-in tiny model (CPU); prints a table.

    python experiments/bench_extract.py [--model tiny] [--image-size 256] [--batch 4] [--repeats 15]

(a) hook overhead: a forward capturing 1, a handful (4, no attention maps) and all catalogue ids (with and
without attention maps, which cost real compute) against a plain forward, measured
interleaved in one run; (b) early exit: a down-stage-only capture that stops after its
deepest id against the same capture running the whole forward; (c) memory: bytes captured per
image and the process's peak RSS. Ratios are medians of per-round ratios.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from autosel.capture import ActivationCapture
from autosel.catalog import list_activations
from autosel.models import Architecture, load_pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.manual_seed(0)

    pipeline = load_pipeline(args.model)
    unet = pipeline.unet
    architecture = Architecture.from_pipeline(pipeline)
    catalogue = list_activations(architecture, args.image_size)
    height, width = architecture.latent_size(args.image_size)
    latents = torch.randn(args.batch, architecture.latent_channels, height, width)
    conditioning = architecture.dummy_conditioning(args.batch, device="cpu")
    timestep = torch.full((args.batch,), 100)

    up = [p for p in catalogue if p.stage == "up" and not p.kind.endswith("-map")]
    handful = [up[len(up) // 5], up[len(up) // 2], up[3 * len(up) // 4], up[-1]]
    no_maps = [p for p in catalogue if not p.kind.endswith("-map")]
    down_only = [p for p in catalogue if p.stage == "down"]
    cases = {
        "plain forward": None,
        "1 id": [up[len(up) // 2]],
        "4 ids": handful,
        f"all but maps ({len(no_maps)})": no_maps,
        f"all ids ({len(catalogue)})": catalogue,
        "down stage, full forward": down_only,
        "down stage, early exit": down_only,
    }
    captured_bytes: dict[str, int] = {}

    def run(name: str) -> float:
        points = cases[name]
        start = time.perf_counter()
        with torch.no_grad():
            if points is None:
                unet(latents, timestep, **conditioning)
            else:
                stop = name.endswith("early exit")
                with ActivationCapture(unet, {p.id: p.tap for p in points}, stop_early=stop) as capture:
                    features = capture.run(latents, timestep, **conditioning)
                captured_bytes[name] = sum(v.numel() * v.element_size() for v in features.values())
        return time.perf_counter() - start

    for name in cases:  # warm-up
        run(name)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name in cases:
            times[name].append(run(name))

    def ratio(name: str, base: str) -> float:
        return statistics.median(a / b for a, b in zip(times[name], times[base]))

    print(f"model {args.model}, {args.image_size} px ({height}x{width} latent), batch {args.batch}, "
          f"{args.repeats} interleaved rounds, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'case':32} {'median ms':>10} {'vs plain':>9} {'captured MB/img':>16}")
    for name in cases:
        base = "down stage, full forward" if name.endswith("early exit") else "plain forward"
        label = f"{ratio(name, base):.3f}" + ("*" if base != "plain forward" else "")
        megabytes = captured_bytes.get(name, 0) / args.batch / 2**20
        print(f"{name:32} {statistics.median(times[name]) * 1e3:10.2f} {label:>9} {megabytes:16.2f}")
    print("* early exit is compared with the same capture running the whole forward")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
