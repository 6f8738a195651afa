"""DIFT's own code against autosel on one random-weight model folder, with shared noise.

Given a local checkout of DIFT (https://github.com/Tsingularity/dift), this runs its
``src/models/dift_sd.py`` (``SDFeaturizer.forward`` on its ``OneStepSDPipeline`` and
``MyUNet2DConditionModel``) and autosel's extractor on the same folder, the same image and the
same noise, and prints how far apart the features are: first with everything shared (the core
must agree to float rounding), then with one of DIFT's settings at a time left to each side
(the cost of each difference). Nothing of DIFT's is copied here: its module is imported from
the checkout and run as released, adapted only to run on a CPU with diffusers 0.42:

- ``torch.Tensor.cuda`` is the identity and the prompt is encoded on the CPU while it runs;
- ``diffusers.models.unet_2d_condition`` (the import path DIFT uses, moved in diffusers 0.26)
  is aliased to where diffusers keeps the module now;
- its ``torch.randn_like`` draw (the noise) and ``latent_dist.sample()`` (the VAE sample) are
  replaced by autosel's seeded draws, so both sides see the same noise.

Run: python experiments/peer_check.py PATH/TO/dift [--model tiny-random] [--size 64]
     [--prompt 'a photo of a cat'] [--ensemble 8] [--timestep 261]
(seconds on a CPU with tiny-random; it cannot run without DIFT's checkout, which this project
does not ship; tests/test_peer_check.py tests the autosel half.)

     python experiments/peer_check.py --autosel-only [--model tiny]
prints, without DIFT, what each of the peers' settings changes in autosel's own features:
the VAE sample, the bicubic resize, gdf's t=51 for 50 and the prompt, each against autosel's
default, as max |Δ|, 1 − cosine and the share of nearest-neighbour matches (every cell of one
image to its most similar cell of another) that stay the same.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from PIL import Image

from autosel.config import FeatureConfig
from autosel.extract import FeatureExtractor
from autosel.models import load_pipeline

ACTIVATION = "up-level1-upsampler-out"
"""DIFT's ``up_ft_index=1``: the output of up block 1, its upsampler's."""


def save_folder(model: str, folder: Path) -> Path:
    """``model`` (an autosel name: a random-weight twin by default) saved as a diffusers folder
    with DIFT's scheduler, DDIM (DIFT loads ``DDIMScheduler`` from the folder)."""
    from diffusers import DDIMScheduler

    pipeline = load_pipeline(model)
    pipeline.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
    pipeline.save_pretrained(folder)
    return folder


def test_image(size: int, seed: int = 0) -> Image.Image:
    """A seeded RGB picture (smooth blobs, so resizing filters differ as on photos), larger than ``size``."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((6, 8, 3))
    big = Image.fromarray((coarse * 255).astype(np.uint8)).resize((size * 2 + 13, size * 2 - 7), Image.BICUBIC)
    return Image.fromarray(np.clip(np.asarray(big) + rng.normal(0, 12, (big.height, big.width, 3)), 0, 255).astype(np.uint8))


def dift_pixels(image: Image.Image, size: int) -> torch.Tensor:
    """The 1×3×H×W tensor in [−1, 1] DIFT's demo and evaluation feed its featurizer: PIL's
    default (bicubic) resize, then ``x / 255 · 2 − 1``."""
    resized = np.asarray(image.convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0
    return (torch.from_numpy(resized).permute(2, 0, 1)[None] - 0.5) * 2


def autosel_side(
    folder: Path, image: Image.Image, size: int, prompt: str, ensemble: int, timestep: int, **extraction
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features 1×C×h×w, noise K×C×h×w, VAE draws K×C×h×w) of ``image`` by autosel's extractor:
    the noise and the standard-normal VAE draws are those autosel used, for DIFT to use too."""
    config = FeatureConfig.from_dict({
        "model": {"name": str(folder)},
        "extraction": {"image_size": size, "prompt": prompt, "ensemble": ensemble, **extraction},
        "activations": [{"id": ACTIVATION, "timestep": timestep}],
    })
    extractor = FeatureExtractor(config, device="cpu")
    pixels = extractor.preprocess([image])
    features = extractor([image])[ACTIVATION]
    shape = extractor.encode(pixels).shape[1:]
    return features, extractor.noise(pixels, shape)[0], extractor.noise(pixels, shape, stream="vae")[0]


@contextlib.contextmanager
def on_cpu(pipeline) -> Iterator[None]:
    """DIFT's ``forward`` as released, on a CPU: ``.cuda()`` is the identity, and the prompt is
    encoded on the CPU (DIFT passes ``device='cuda'``)."""
    original_cuda = torch.Tensor.cuda
    encode = pipeline.encode_prompt
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    pipeline._encode_prompt = lambda **kwargs: encode(**{**kwargs, "device": "cpu"})[0]
    try:
        yield
    finally:
        torch.Tensor.cuda = original_cuda
        del pipeline._encode_prompt


@contextlib.contextmanager
def shared_draws(module: types.ModuleType, noise: torch.Tensor, vae_draws: torch.Tensor | None) -> Iterator[None]:
    """DIFT's ``torch.randn_like`` returns ``noise``; ``latent_dist.sample()`` returns the mean
    (``vae_draws`` None) or mean + std · ``vae_draws``."""
    original_torch, original_sample = module.torch, DiagonalGaussianDistribution.sample
    proxy = types.SimpleNamespace(**{name: getattr(torch, name) for name in dir(torch) if not name.startswith("__")})
    proxy.randn_like = lambda like, **kwargs: noise.to(like.device, like.dtype)
    module.torch = proxy

    def sample(self, generator=None):
        return self.mean if vae_draws is None else self.mean + self.std * vae_draws.to(self.mean.device, self.mean.dtype)

    DiagonalGaussianDistribution.sample = sample
    try:
        yield
    finally:
        module.torch, DiagonalGaussianDistribution.sample = original_torch, original_sample


def load_dift(checkout: Path) -> types.ModuleType:
    """DIFT's ``src/models/dift_sd.py`` from ``checkout``, importable with diffusers 0.42."""
    import diffusers.models.unets.unet_2d_condition as moved

    sys.modules.setdefault("diffusers.models.unet_2d_condition", moved)
    sys.path.insert(0, str(checkout))
    return importlib.import_module("src.models.dift_sd")


def dift_side(module: types.ModuleType, folder: Path, pixels: torch.Tensor, prompt: str, ensemble: int, timestep: int) -> torch.Tensor:
    """DIFT's ``SDFeaturizer.forward`` on ``folder`` (its ``__init__`` loads from the hub to CUDA
    with xformers, so the pipeline is built as it builds it, on the CPU)."""
    from diffusers import DDIMScheduler

    unet = module.MyUNet2DConditionModel.from_pretrained(folder, subfolder="unet")
    pipeline = module.OneStepSDPipeline.from_pretrained(folder, unet=unet, safety_checker=None)
    pipeline.scheduler = DDIMScheduler.from_pretrained(folder, subfolder="scheduler")
    featurizer = object.__new__(module.SDFeaturizer)
    featurizer.pipe = pipeline
    with on_cpu(pipeline):
        return featurizer.forward(pixels, prompt=prompt, t=timestep, up_ft_index=1, ensemble_size=ensemble)


def compare(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(max |a − b|, 1 − cosine of the flattened maps)."""
    a, b = a.double().flatten(), b.double().flatten()
    return float((a - b).abs().max()), float(1 - torch.nn.functional.cosine_similarity(a, b, dim=0))


def nearest_matches(features: torch.Tensor) -> torch.Tensor:
    """For every cell of image 0's C×h×w map, the index of the most similar cell (cosine) of image 1's."""
    source, target = (torch.nn.functional.normalize(f.flatten(1).double(), dim=0) for f in features[:2])
    return (source.T @ target).argmax(dim=1)


def costs(model: str, size: int, prompt: str, ensemble: int, timestep: int) -> list[tuple[str, float, float, float]]:
    """What each peer setting changes in autosel's features of two test images, against the default."""
    images = [test_image(size, seed) for seed in (0, 1)]

    def features(**changes) -> torch.Tensor:
        settings = {"prompt": "", "ensemble": ensemble, "timestep": timestep, **changes}
        t = settings.pop("timestep")
        config = FeatureConfig.from_dict({
            "model": {"name": model}, "extraction": {"image_size": size, **settings},
            "activations": [{"id": ACTIVATION, "timestep": t}],
        })
        return FeatureExtractor(config, device="cpu")(images)[ACTIVATION]

    default = features()
    rows = []
    for label, changes in [
        ("VAE posterior sample (DIFT, gdf) vs mean", {"vae_posterior": "sample"}),
        ("PIL bicubic on 8 bit (DIFT, gdf) vs bilinear", {"resize_filter": "bicubic"}),
        (f"t={timestep + 1} (gdf's t={timestep} under PNDM) vs t={timestep}", {"timestep": timestep + 1}),
        (f"prompt {prompt!r} vs ''", {"prompt": prompt}),
    ]:
        changed = features(**changes)
        largest, cosine = compare(changed, default)
        agree = float((nearest_matches(changed) == nearest_matches(default)).double().mean())
        rows.append((label, largest, cosine, agree))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dift", type=Path, nargs="?", help="a local checkout of github.com/Tsingularity/dift")
    parser.add_argument("--autosel-only", action="store_true", help="only what each peer setting changes in autosel")
    parser.add_argument("--model", default="tiny-random", help="autosel model saved as the folder both sides load")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--prompt", default="a photo of a cat")
    parser.add_argument("--ensemble", type=int, default=8)
    parser.add_argument("--timestep", type=int, default=261)
    args = parser.parse_args()
    if args.autosel_only:
        print(f"autosel's {ACTIVATION} on {args.model}, {args.size} px, t={args.timestep}, ensemble {args.ensemble}, "
              "two seeded test images\n")
        print("| setting | max abs difference | 1 − cosine | nearest-neighbour matches kept |\n| --- | ---: | ---: | ---: |")
        for label, largest, cosine, agree in costs(args.model, args.size, args.prompt, args.ensemble, args.timestep):
            print(f"| {label} | {largest:.2e} | {cosine:.1e} | {100 * agree:.1f}% |")
        return
    if args.dift is None or not (args.dift / "src" / "models" / "dift_sd.py").is_file():
        sys.exit(f"{args.dift}: no src/models/dift_sd.py (give a checkout of github.com/Tsingularity/dift)")
    module = load_dift(args.dift)
    with tempfile.TemporaryDirectory() as temporary:
        folder = save_folder(args.model, Path(temporary) / "model")
        image = test_image(args.size)
        resized = image.resize((args.size, args.size), Image.BICUBIC)  # DIFT's input, given to autosel as is
        pixels = dift_pixels(image, args.size)
        common = (args.prompt, args.ensemble, args.timestep)
        rows = []

        ours, noise, draws = autosel_side(folder, resized, args.size, *common)
        with shared_draws(module, noise, None):
            rows.append(("VAE mean, shared noise, same pixels", compare(ours, dift_side(module, folder, pixels, *common))))
        ours_sampled, noise, draws = autosel_side(folder, resized, args.size, *common, vae_posterior="sample")
        with shared_draws(module, noise, draws):
            theirs_sampled = dift_side(module, folder, pixels, *common)
        rows.append(("VAE sample per member, shared draws (vae_posterior: sample)", compare(ours_sampled, theirs_sampled)))
        with shared_draws(module, noise, None):
            theirs_mean = dift_side(module, folder, pixels, *common)
        rows.append(("cost of the VAE sample: DIFT sampled vs mean, same noise", compare(theirs_sampled, theirs_mean)))
        bilinear, noise, _ = autosel_side(folder, image, args.size, *common)
        with shared_draws(module, noise, None):  # noise seeded from autosel's own (bilinear) pixels
            rows.append(("cost of the resize: autosel bilinear vs DIFT's PIL bicubic", compare(bilinear, dift_side(module, folder, pixels, *common))))
        bicubic, noise, _ = autosel_side(folder, image, args.size, *common, resize_filter="bicubic")
        with shared_draws(module, noise, None):
            rows.append(("resize_filter: bicubic on the original image", compare(bicubic, dift_side(module, folder, pixels, *common))))
        empty, noise, _ = autosel_side(folder, resized, args.size, "", args.ensemble, args.timestep)
        rows.append((f"cost of the prompt: '' vs {args.prompt!r} (autosel, same noise)", compare(empty, ours)))

    print(f"DIFT ({args.dift}) vs autosel on {args.model} saved as a folder, {args.size} px, t={args.timestep}, "
          f"ensemble {args.ensemble}, {ACTIVATION} (DIFT's up_ft_index 1)\n")
    print("| setting | max abs difference | 1 − cosine |\n| --- | ---: | ---: |")
    for label, (largest, cosine) in rows:
        print(f"| {label} | {largest:.2e} | {cosine:.1e} |")


if __name__ == "__main__":
    main()
