"""Train the embedded default model `tiny` on the shapes dataset's train split (CPU-friendly).

    python experiments/train_tiny_model.py [--max-minutes 80] [--out autosel/models/tiny_pipeline]

Measured on 2 CPU cores: about 9 min for the VAE (700 steps of 32) and 56 min for the UNet
(4000 steps of 64, 0.83 s/step).

Two stages, each resumable from checkpoints in --work (rerun the same command to continue):
1. a light AutoencoderKL (64 px ↔ 4×16×16 latents, L1 + tiny KL), then its latent scaling
   factor (1/std of the train latents, as in Stable Diffusion);
2. the UNet (SD layout: cross-attention down/up levels, frozen seeded CLIP text encoder fed
   category prompts with 20% empty prompts), epsilon prediction on SD's noise schedule,
   min-SNR-5 loss weighting, AdamW with warm-up and cosine decay, EMA weights.
The EMA UNet is written with the rest as a diffusers folder (`from_pretrained` loads it).
Everything is seeded: the same arguments give the same weights on the same machine.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from autosel.data import CATEGORIES, ShapesDataset
from autosel.models.tiny import build_tiny_pipeline

PROMPTS = [f"a {category.name}" for category in CATEGORIES]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("autosel/models/tiny_pipeline"))
    parser.add_argument("--work", type=Path, default=Path(".cache/tiny-training"))
    parser.add_argument("--images", type=int, default=20000, help="train-split images rendered once")
    parser.add_argument("--vae-steps", type=int, default=700)
    parser.add_argument("--unet-steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-minutes", type=float, default=float("inf"), help="checkpoint and stop after this long")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + args.max_minutes * 60
    torch.manual_seed(args.seed)

    images, labels = render_train_set(args.work / "train-set.npz", args.images)
    pipeline = build_tiny_pipeline("tiny-random", seed=args.seed)
    if not train_vae(pipeline.vae, images, args, deadline):
        return
    if not train_unet(pipeline, images, labels, args, deadline):
        return
    pipeline.unet.load_state_dict(torch.load(args.work / "unet-ema.pt", weights_only=True))
    pipeline.save_pretrained(args.out, safe_serialization=True)
    log(f"wrote {args.out}")


def render_train_set(path: Path, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    if path.exists():
        stored = np.load(path)
        if len(stored["labels"]) == count:
            return torch.from_numpy(stored["images"]), torch.from_numpy(stored["labels"])
    dataset = ShapesDataset("train", size=64, length=count)
    names = [c.name for c in CATEGORIES]
    images = np.stack([dataset[i].image for i in range(count)])
    labels = np.array([names.index(dataset.category_of(i)) for i in range(count)])
    np.savez(path, images=images, labels=labels)
    log(f"rendered {count} train images")
    return torch.from_numpy(images), torch.from_numpy(labels)


def to_pixels(batch: torch.Tensor) -> torch.Tensor:
    return batch.permute(0, 3, 1, 2).float() / 127.5 - 1


def train_vae(vae, images: torch.Tensor, args, deadline: float) -> bool:
    checkpoint = args.work / "vae.pt"
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    step = restore(checkpoint, {"model": vae, "optimizer": optimizer})
    vae.train()
    while step < args.vae_steps:
        generator = step_generator(args.seed, "vae", step)
        batch = to_pixels(images[torch.randint(len(images), (32,), generator=generator)])
        for group in optimizer.param_groups:
            group["lr"] = 1e-3 * 0.5 * (1 + math.cos(math.pi * step / args.vae_steps))
        posterior = vae.encode(batch).latent_dist
        reconstruction = vae.decode(posterior.sample(generator=generator)).sample
        loss = (reconstruction - batch).abs().mean() + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if step % 50 == 0:
            log(f"vae step {step}/{args.vae_steps} L1 {loss.item():.4f}")
        if step % 200 == 0 or step == args.vae_steps or time.time() > deadline:
            save(checkpoint, {"model": vae, "optimizer": optimizer}, step)
            if time.time() > deadline and step < args.vae_steps:
                log("time is up: rerun the same command to resume")
                return False
    vae.eval()
    scale_file = args.work / "vae-scale.json"
    if not scale_file.exists():
        with torch.no_grad():
            latents = torch.cat([vae.encode(to_pixels(images[i : i + 256])).latent_dist.mean for i in range(0, 4096, 256)])
        scale_file.write_text(json.dumps({"scaling_factor": float(1 / latents.std())}))
    vae.register_to_config(scaling_factor=json.loads(scale_file.read_text())["scaling_factor"])
    return True


def train_unet(pipeline, images: torch.Tensor, labels: torch.Tensor, args, deadline: float) -> bool:
    unet, vae = pipeline.unet, pipeline.vae
    latents = encode_train_set(vae, images, args.work / "latents.pt")
    with torch.no_grad():
        prompts = pipeline.encode_prompt(PROMPTS + [""], "cpu", 1, False)[0]  # 5×L×C, text encoder frozen
    alphas = pipeline.scheduler.alphas_cumprod.clone().float()
    snr = alphas / (1 - alphas)
    weights = torch.clamp(snr, max=5.0) / snr  # min-SNR-5 for epsilon prediction

    ema = {name: value.detach().clone() for name, value in unet.state_dict().items()}
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-3, weight_decay=0.01)
    checkpoint = args.work / "unet.pt"
    step = restore(checkpoint, {"model": unet, "optimizer": optimizer}, ema)
    unet.train()
    started, start_step = time.time(), step
    while step < args.unet_steps:
        generator = step_generator(args.seed, "unet", step)
        index, timesteps, noise, empty = _draw(generator, len(latents), args.batch, latents.shape[1:])
        clean = latents[index]
        prompt_index = torch.where(empty, torch.full_like(labels[index], len(PROMPTS)), labels[index])
        a = alphas[timesteps].view(-1, 1, 1, 1)
        noisy = a.sqrt() * clean + (1 - a).sqrt() * noise
        prediction = unet(noisy, timesteps, prompts[prompt_index]).sample
        loss = (weights[timesteps] * F.mse_loss(prediction, noise, reduction="none").mean(dim=(1, 2, 3))).mean()
        step = denoiser_step(unet, optimizer, ema, loss, step, args.unet_steps, 1e-3)
        if not report_and_checkpoint("unet", unet, optimizer, ema, loss, step, args.unet_steps, (started, start_step),
                                     checkpoint, args.work / "unet-ema.pt", deadline):
            return False
    return True


def encode_train_set(vae, images: torch.Tensor, path: Path) -> torch.Tensor:
    """The train images' scaled VAE latents (posterior means), encoded once and kept at ``path``."""
    if path.exists():
        return torch.load(path, weights_only=True)
    with torch.no_grad():
        means = [vae.encode(to_pixels(images[i : i + 256])).latent_dist.mean for i in range(0, len(images), 256)]
    latents = (torch.cat(means) - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor
    torch.save(latents, path)
    log(f"encoded {len(latents)} latents, std {latents.std():.3f}")
    return latents


def denoiser_step(model, optimizer, ema: dict, loss: torch.Tensor, step: int, total: int, lr: float) -> int:
    """One optimiser step of a denoiser (warm-up 200, cosine to 10% of ``lr``, grad clip 1), then
    its EMA (decay up to 0.999); returns the new step count."""
    warmup = min(1.0, (step + 1) / 200)
    for group in optimizer.param_groups:
        group["lr"] = lr * warmup * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / total)))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    step += 1
    decay = min(0.999, (1 + step) / (10 + step))
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                ema[name].mul_(decay).add_(value.detach(), alpha=1 - decay)
            else:
                ema[name].copy_(value)
    return step


def report_and_checkpoint(stage: str, model, optimizer, ema: dict, loss: torch.Tensor, step: int, total: int,
                          since: tuple[float, int], checkpoint: Path, ema_path: Path, deadline: float) -> bool:
    """Log every 50 steps; checkpoint every 250, at the end and when time is up; False when it is."""
    if step % 50 == 0:
        rate = (time.time() - since[0]) / max(step - since[1], 1)
        log(f"{stage} step {step}/{total} loss {loss.item():.4f} ({rate:.2f} s/step)")
    if step % 250 == 0 or step == total or time.time() > deadline:
        save(checkpoint, {"model": model, "optimizer": optimizer}, step, ema)
        torch.save(ema, ema_path)
        if time.time() > deadline and step < total:
            log("time is up: rerun the same command to resume")
            return False
    return True


def step_generator(seed: int, stage: str, step: int) -> torch.Generator:
    """Randomness of one step, a function of (seed, stage, step): resumed runs repeat it exactly."""
    offset = {"vae": 1, "unet": 2, "dit": 3}[stage]
    return torch.Generator().manual_seed((seed * 1_000_003 + offset) * 10_000_019 + step)


def _draw(generator: torch.Generator, count: int, batch: int, shape) -> tuple[torch.Tensor, ...]:
    index = torch.randint(count, (batch,), generator=generator)
    timesteps = torch.randint(1000, (batch,), generator=generator)
    noise = torch.randn(batch, *shape, generator=generator)
    empty = torch.rand(batch, generator=generator) < 0.2
    return index, timesteps, noise, empty


def save(path: Path, parts: dict, step: int, ema: dict | None = None) -> None:
    state = {name: part.state_dict() for name, part in parts.items()}
    state["step"] = step
    if ema is not None:
        state["ema"] = ema
    torch.save(state, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)  # a killed run never leaves a half-written checkpoint


def restore(path: Path, parts: dict, ema: dict | None = None) -> int:
    if not path.exists():
        return 0
    state = torch.load(path, weights_only=True)
    for name, part in parts.items():
        part.load_state_dict(state[name])
    if ema is not None and "ema" in state:
        ema.update(state["ema"])
    log(f"resumed {path.name} at step {state['step']}")
    return int(state["step"])


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


if __name__ == "__main__":
    main()
