"""How a config's timestep t maps to σ, per family and image size, measured with the models' own
schedulers (diffusers' classes built from the shipped scheduler configs, not autosel's formulas).

Rectified flow (SD3, FLUX): the scheduler is given ``sigmas=[t/1000]`` (with FLUX's μ for the
image's token count, as FluxPipeline computes it) and its first σ is read back, as autosel's
recording path does. DDPM families: σ = √(1 − ᾱ_t) from the training betas.
Run: python experiments/sigma_table.py  (prints a Markdown table; a second, no GPU).
"""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.flux.pipeline_flux import calculate_shift

TIMESTEPS = (50, 150, 260, 500, 800)
DDPM_CONFIGS = {  # the training schedules as the checkpoints' scheduler configs state them
    "sd, sdxl, pgv2 (scaled linear 0.00085–0.012)": {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"},
    "pixart (linear 0.0001–0.02)": {"beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear"},
    "if (squaredcos_cap_v2)": {"beta_schedule": "squaredcos_cap_v2"},
}


def shipped_scheduler(name: str) -> dict:
    text = resources.files("autosel.models").joinpath("configs", f"{name}.json").read_text()
    return json.loads(text)["scheduler"]


def flow_sigma(config: dict, t: int, image_side: int | None) -> float:
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(config)
    kwargs = {}
    if config.get("use_dynamic_shifting"):
        tokens = (image_side // 16) ** 2  # 8× VAE, then 2×2 packing
        kwargs["mu"] = calculate_shift(tokens, config["base_image_seq_len"], config["max_image_seq_len"],
                                       config["base_shift"], config["max_shift"])
    scheduler.set_timesteps(sigmas=[t / 1000], **kwargs)
    return float(scheduler.sigmas[0])


def ddpm_sigma(config: dict, t: int) -> float:
    scheduler = DDPMScheduler.from_config({"num_train_timesteps": 1000, **config})
    return float(np.sqrt(1.0 - scheduler.alphas_cumprod[t].double().item()))


def main() -> None:
    rows = []
    for size in (512, 640, 1024):
        rows.append((f"flux-dev (dynamic shift), {size} px", [flow_sigma(shipped_scheduler("flux-dev"), t, size) for t in TIMESTEPS]))
    rows.append(("flux-schnell (shift 1), any size", [flow_sigma(shipped_scheduler("flux-schnell"), t, None) for t in TIMESTEPS]))
    rows.append(("sd3, sd3.5 (shift 3), any size", [flow_sigma(shipped_scheduler("sd3-medium"), t, None) for t in TIMESTEPS]))
    for label, config in DDPM_CONFIGS.items():
        rows.append((f"{label}, any size", [ddpm_sigma(config, t) for t in TIMESTEPS]))
    print("| family, image size | " + " | ".join(f"t={t}" for t in TIMESTEPS) + " |")
    print("| --- | " + " | ".join("---:" for _ in TIMESTEPS) + " |")
    for label, sigmas in rows:
        print(f"| {label} | " + " | ".join(f"{s:.3f}" for s in sigmas) + " |")


if __name__ == "__main__":
    main()
