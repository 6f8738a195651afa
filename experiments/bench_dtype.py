"""Half precision and the plan on a real-size layout, on a CPU: builds an SDXL-layout pipeline
(the shipped SDXL UNet config, 2.57 B parameters, random weights; the SD VAE; one-layer CLIP
text encoders of SDXL's widths) in a temporary folder, then runs `autosel sweep` on it as a
user would, once per dtype, each in its own process, and prints what the `--dry-run` plan said
beside what the run measured (denoiser forwards, peak RSS of the process, wall time).

Run: python experiments/bench_dtype.py [--layout sdxl|sd15] [--image-size 128] [--pairs 4]
(about 10 minutes for sdxl on 2 CPU cores; needs about 16 GB of RAM and 6 GB of disk).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def build_folder(layout: str, folder: Path) -> None:
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from autosel.models.architecture import shipped_architecture
    from autosel.models.tiny import byte_level_clip_tokenizer

    tokenizer = byte_level_clip_tokenizer()

    def clip(width: int, projection: bool):
        config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=width, intermediate_size=width, num_hidden_layers=1,
                                num_attention_heads=8, max_position_embeddings=77, projection_dim=width,
                                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                pad_token_id=tokenizer.pad_token_id)
        return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)

    torch.manual_seed(0)
    unet = shipped_architecture(layout).build_denoiser(device="cpu").to(torch.float16)
    vae = AutoencoderKL(block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
                        up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2, latent_channels=4)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    if layout == "sdxl":
        pipeline = StableDiffusionXLPipeline(vae=vae, text_encoder=clip(768, False), text_encoder_2=clip(1280, True),
                                             tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet, scheduler=scheduler)
    else:
        pipeline = StableDiffusionPipeline(vae=vae, text_encoder=clip(768, False), tokenizer=tokenizer, unet=unet,
                                           scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                           requires_safety_checker=False)
    pipeline.save_pretrained(folder)


def run(command: list[str], cwd: Path) -> tuple[str, float, int]:
    """Output, wall seconds and the child's peak RSS in bytes (Linux)."""
    started = time.perf_counter()
    script = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
              "print(p.stdout + p.stderr); print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", script, *command], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    output = done.stdout
    peak = int(re.search(r"MAXRSS (\d+)", output).group(1)) * 1024
    return output, time.perf_counter() - started, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", choices=["sdxl", "sd15"], default="sdxl")
    parser.add_argument("--image-size", default="128")
    parser.add_argument("--pairs", default="4")
    args = parser.parse_args()
    autosel = str(Path(sys.executable).with_name("autosel"))
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp) / f"{args.layout}-layout"
        started = time.perf_counter()
        build_folder(args.layout, folder)
        print(f"built {folder.name} in {time.perf_counter() - started:.0f} s")
        common = ["--model", str(folder), "--image-size", args.image_size, "--pairs", args.pairs, "--timesteps", "50",
                  "--include", "up-level1-repeat0-*", "--exclude", "*-map", "--batch-size", "4", "--out", str(Path(temp) / "out"),
                  "--storage", f"sqlite:///{temp}/store.db"]
        print("| dtype | plan: forwards | run: forwards | plan: peak GiB | run: peak RSS GiB | run: wall s |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for dtype in ("float32", "float16"):
            plan, _, _ = run([autosel, "sweep", *common, "--dtype", dtype, "--dry-run"], Path(temp))
            output, seconds, peak = run([autosel, "sweep", *common, "--dtype", dtype, "--no-progress"], Path(temp))
            planned = re.search(r"screen ([\d,]+); total", plan)
            planned_peak = re.search(r"peak memory per worker ≈ ([\d.]+) (GiB|MiB)", plan)
            ran = re.search(r"scored now with (\d+) denoiser forwards", output)
            if not (planned and planned_peak and ran):
                print(plan, output)
                raise SystemExit(f"{dtype}: could not read the plan or the run")
            plan_gib = float(planned_peak.group(1)) / (1024 if planned_peak.group(2) == "MiB" else 1)
            print(f"| {dtype} | {planned.group(1)} | {ran.group(1)} | {plan_gib:.2f} | {peak / 2**30:.2f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
