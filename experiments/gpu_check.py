"""GPU check: SDXL- and FLUX-layout denoisers with random weights, built from the shipped
configs, in bf16 at native size on a CUDA device. Measures, per layout: ms per forward (batch
1 and 8), images/s of a sweep capture of the SDXL space's candidates (every candidate of
search_spaces/sdxl.yaml hooked; for FLUX every block's output), the early-exit ratio (a forward
stopped after a shallow id ÷ a whole forward), peak GPU memory, and the share of the physical
limit: FLOPs per forward (counted on the meta device, autosel.catalog.forward_flops) ÷ measured
time ÷ the GPU's dense bf16 peak. Writes results/gpu/gpu_check.{json,md}. Under 5 minutes on
an H100/H200.

Run: python experiments/gpu_check.py            (on a machine with CUDA)
     python experiments/gpu_check.py --smoke     (CPU, the random twins, float32: checks the script)
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import torch

from autosel.candidates import select_candidates
from autosel.capture import ActivationCapture
from autosel.catalog import forward_flops, measure_catalogue
from autosel.models import load_architecture, resolve_model
from autosel.space import load_space

DENSE_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "RTX 4090": 165.0}
"""Vendor dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, by a substring of the device name."""


def timed(step, device: torch.device, repeats: int) -> float:
    """Median seconds of ``step()`` after two warm-up calls (CUDA events on a GPU)."""
    for _ in range(2):
        step()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            started = time.perf_counter()
            step()
            times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def check(model: str, candidates_from: str | None, device: torch.device, dtype: torch.dtype, repeats: int) -> dict:
    architecture = load_architecture(resolve_model(model))
    size = architecture.native_resolution
    latent_hw = architecture.latent_size(size)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # parameters are created in the dtype, on the device
    try:
        denoiser = architecture.build_denoiser(device=device)
    finally:
        torch.set_default_dtype(previous)
    catalogue = measure_catalogue(architecture, size)
    if candidates_from:
        space = load_space(candidates_from)
        chosen = select_candidates(catalogue, space.candidates.include, space.candidates.exclude, model)
    else:
        chosen = [p for p in catalogue if p.kind == "vit-block-out"]
    shallow = chosen[0]

    def inputs(batch: int):
        sample = torch.randn(batch, architecture.latent_channels, *latent_hw, device=device, dtype=dtype)
        timestep = torch.full((batch,), 0.26 if architecture.flow else 260, device=device,
                              dtype=torch.float32 if architecture.flow else torch.long)
        return architecture.inputs(sample, timestep, architecture.dummy_conditioning(batch, device, dtype))

    result = {"model": model, "family": architecture.family, "image_size": size, "dtype": str(dtype).split(".")[-1],
              "parameters": sum(p.numel() for p in denoiser.parameters())}
    with torch.no_grad():
        for batch in (1, 8):
            args, kwargs = inputs(batch)
            seconds = timed(functools.partial(denoiser, *args, **kwargs), device, repeats)
            result[f"ms_per_forward_batch{batch}"] = 1000 * seconds
            result[f"flops_batch{batch}"] = forward_flops(architecture, size, batch)
            result[f"tflops_per_s_batch{batch}"] = result[f"flops_batch{batch}"] / seconds / 1e12
        args, kwargs = inputs(8)
        with ActivationCapture(denoiser, {p.id: p.tap for p in chosen}) as capture:
            capture.token_grid = architecture.token_grid(latent_hw)
            seconds = timed(lambda: capture.run(*args, **kwargs), device, repeats)
        result["sweep_candidates"] = len(chosen)
        result["sweep_images_per_s"] = 8 / seconds
        with ActivationCapture(denoiser, {shallow.id: shallow.tap}, stop_early=True) as capture:
            capture.token_grid = architecture.token_grid(latent_hw)
            early = timed(lambda: capture.run(*args, **kwargs), device, repeats)
        result["early_exit_id"] = shallow.id
        result["early_exit_depth"] = shallow.depth
        result["early_exit_ratio"] = early / (result["ms_per_forward_batch8"] / 1000)
    if device.type == "cuda":
        result["peak_gpu_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        name = torch.cuda.get_device_name(device)
        result["device"] = name
        peak = next((value for key, value in DENSE_BF16_TFLOPS.items() if key in name), None)
        if peak is not None:
            result["dense_bf16_peak_tflops"] = peak
            result["share_of_peak_batch8"] = result["tflops_per_s_batch8"] / peak
    del denoiser
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, random twins, float32: only checks the script runs")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("results/gpu"))
    args = parser.parse_args()
    if args.smoke:
        device, dtype = torch.device("cpu"), torch.float32
        layouts = [("tiny-xl-random", None), ("tiny-flux-random", None)]
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run this on a GPU machine (or --smoke to check the script on a CPU)")
        device, dtype = torch.device("cuda"), torch.bfloat16
        layouts = [("sdxl", "sdxl"), ("flux-dev", None)]
    results = [check(model, space, device, dtype, args.repeats) for model, space in layouts]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / ("gpu_check_smoke.json" if args.smoke else "gpu_check.json")).write_text(json.dumps(results, indent=2))
    lines = ["| layout | px | ms/forward b1 | ms/forward b8 | sweep img/s (candidates) | early exit | peak GiB | TFLOP/s b8 | share of peak |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        share = r.get("share_of_peak_batch8")
        lines.append(
            f"| {r['model']} ({r['family']}) | {r['image_size']} | {r['ms_per_forward_batch1']:.1f} | {r['ms_per_forward_batch8']:.1f} "
            f"| {r['sweep_images_per_s']:.1f} ({r['sweep_candidates']}) | {r['early_exit_ratio']:.2f} at depth {r['early_exit_depth']:.2f} "
            f"| {r.get('peak_gpu_gib', float('nan')):.1f} | {r['tflops_per_s_batch8']:.1f} | {'–' if share is None else f'{100 * share:.0f}%'} |"
        )
    table = "\n".join(lines)
    (args.out / ("gpu_check_smoke.md" if args.smoke else "gpu_check.md")).write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
