"""Parity with the diffusers pipelines: per family, the denoiser's call that autosel makes equals
the one the family's own pipeline makes for one step on the same noisy input.

Each test runs the diffusers pipeline itself (``pipeline(...)``) for one step, records its
denoiser's first call with a forward pre-hook (arguments, keywords included) and a forward hook
(the output), and compares them with the call that :class:`autosel.denoiser.Denoiser` makes for
the same image, noise and timestep: every argument and the output agree within float
tolerance. The pipeline is given autosel's noisy latent (``latents=``, packed as the pipeline
packs it) and its timestep through its own parameters (``sigmas=[t/1000]`` for rectified flow,
its scheduler's grid for DDPM ones), so that what is compared is what the denoiser is given.

Where autosel differs from a pipeline on purpose the test says so: features are taken from the
conditional branch (classifier-free guidance off: ``guidance_scale=1``), the image size is not
snapped to a trained aspect-ratio bin (``use_resolution_binning=False``), the clean latent is the
VAE posterior's mean (the img2img pipelines sample it). The models are the registry's random-weight
twins at 64 px.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import torch

from autosel.denoiser import Denoiser
from autosel.models import load_pipeline

SIZE = 64
PROMPT = "a photo of a square"
SEED = 7


class _Stop(Exception):
    """Ends the pipeline's call once its denoiser's first forward has run."""


def pipeline_call(pipeline: Any, component: str, **kwargs: Any) -> tuple[dict[str, Any], torch.Tensor]:
    """Runs ``pipeline(**kwargs)`` until its denoiser's first forward has returned: that call's
    arguments (by parameter name, defaults filled in) and output."""
    denoiser = getattr(pipeline, component)
    recorded: dict[str, Any] = {}

    def before(module, args, hook_kwargs):
        recorded["arguments"] = _bound(module, args, hook_kwargs)

    def after(module, args, hook_kwargs, output):
        recorded["output"] = _first_tensor(output)
        raise _Stop

    handles = [denoiser.register_forward_pre_hook(before, with_kwargs=True),
               denoiser.register_forward_hook(after, with_kwargs=True)]
    try:
        with torch.no_grad():
            pipeline(**kwargs)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    assert "output" in recorded, f"{type(pipeline).__name__} never called its {component}"
    return recorded["arguments"], recorded["output"]


def autosel_call(denoiser: Denoiser, latents: torch.Tensor, noise: torch.Tensor, timestep: int) -> tuple[dict[str, Any], torch.Tensor]:
    """The arguments and output of the denoiser forward autosel runs for clean ``latents`` (B×C×h×w)
    and ``noise`` (same shape) at ``timestep``, with the run's own conditioning."""
    recorded: dict[str, Any] = {}
    module = denoiser.module

    def before(module, args, hook_kwargs):
        recorded["arguments"] = _bound(module, args, hook_kwargs)

    def after(module, args, hook_kwargs, output):
        recorded["output"] = _first_tensor(output)

    points = {point.id: point for point in denoiser.catalogue(SIZE)[:1]}
    handles = [module.register_forward_pre_hook(before, with_kwargs=True),
               module.register_forward_hook(after, with_kwargs=True)]
    try:
        denoiser.capture(latents, noise.unsqueeze(1), timestep, points, prompt=PROMPT, image_hw=(SIZE, SIZE),
                         stop_early=False)
    finally:
        for handle in handles:
            handle.remove()
    return recorded["arguments"], recorded["output"]


def _bound(module: torch.nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    bound = inspect.signature(module.forward).bind(*args, **kwargs)
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    arguments.pop("return_dict", None)  # how the output is wrapped, not what the denoiser is given
    extra = arguments.pop("kwargs", None) or {}
    return {**arguments, **extra}


def _first_tensor(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return output[0]
    return output.sample


def assert_same_call(ours: Mapping[str, Any], theirs: Mapping[str, Any], atol: float = 1e-5) -> None:
    """Every argument of the two calls equal within ``atol`` (a 0-d timestep equals one per row)."""
    assert set(ours) == set(theirs), f"arguments differ: autosel only {set(ours) - set(theirs)}, pipeline only {set(theirs) - set(ours)}"
    for name in ours:
        _assert_same(ours[name], theirs[name], name, atol)


def _assert_same(ours: Any, theirs: Any, name: str, atol: float) -> None:
    if isinstance(ours, torch.Tensor) or isinstance(theirs, torch.Tensor):
        a, b = torch.as_tensor(ours).double(), torch.as_tensor(theirs).double()
        if a.shape != b.shape and min(a.numel(), b.numel()) == 1:  # 0-d timestep vs one per row
            a, b = torch.broadcast_tensors(a, b)
        assert a.shape == b.shape, f"{name}: shape {tuple(a.shape)} (autosel) vs {tuple(b.shape)} (pipeline)"
        difference = (a - b).abs().max().item() if a.numel() else 0.0
        assert difference <= atol, f"{name}: differs by {difference:.3g} (autosel {a.flatten()[:6].tolist()} vs pipeline {b.flatten()[:6].tolist()})"
    elif isinstance(ours, Mapping) and isinstance(theirs, Mapping):
        assert set(ours) == set(theirs), f"{name}: keys {sorted(ours)} (autosel) vs {sorted(theirs)} (pipeline)"
        for key in ours:
            _assert_same(ours[key], theirs[key], f"{name}.{key}", atol)
    elif isinstance(ours, (list, tuple)) and isinstance(theirs, (list, tuple)):
        assert len(ours) == len(theirs), f"{name}: {len(ours)} items (autosel) vs {len(theirs)} (pipeline)"
        for index, (a, b) in enumerate(zip(ours, theirs)):
            _assert_same(a, b, f"{name}[{index}]", atol)
    elif _empty(ours) and _empty(theirs):
        pass  # no attention kwargs: None and {} say the same
    else:
        assert ours == theirs, f"{name}: {ours!r} (autosel) vs {theirs!r} (pipeline)"


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, Mapping) and not value)


def assert_same_output(ours: torch.Tensor, theirs: torch.Tensor, atol: float = 1e-5) -> None:
    assert ours.shape == theirs.shape
    difference = (ours.double() - theirs.double()).abs().max().item()
    assert difference <= atol, f"the denoiser's outputs differ by {difference:.3g}"


# -- inputs ---------------------------------------------------------------------------------


def image() -> torch.Tensor:
    """One 64 px image in [0, 1] (smooth, so that the VAE sees structure)."""
    ramp = torch.linspace(0, 1, SIZE)
    return torch.stack([ramp[None, :].expand(SIZE, SIZE), ramp[:, None].expand(SIZE, SIZE),
                        (ramp[None, :] * ramp[:, None])]).unsqueeze(0)


def seeded_noise(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(SEED))


def prepared(name: str, change: Callable[[Any], Any] | None = None) -> tuple[Any, Denoiser, torch.Tensor, torch.Tensor]:
    """The twin's pipeline (through ``change`` if given), autosel's denoiser on that same
    pipeline, the clean latent of :func:`image` as autosel encodes it, and seeded noise of its shape."""
    pipeline = load_pipeline(name)
    if change is not None:
        pipeline = change(pipeline)
    denoiser = Denoiser(pipeline, device="cpu")
    latents = denoiser.encode(image())
    return pipeline, denoiser, latents, seeded_noise(tuple(latents.shape))


def ddpm_first_timestep(pipeline: Any, steps: int) -> int:
    """The first timestep of the pipeline scheduler's own ``steps``-step grid."""
    scheduler = type(pipeline.scheduler).from_config(pipeline.scheduler.config)
    scheduler.set_timesteps(steps)
    return int(scheduler.timesteps[0])


def noisy_ddpm(pipeline: Any, latents: torch.Tensor, noise: torch.Tensor, timestep: int) -> torch.Tensor:
    """x_t as the img2img pipelines noise a clean latent: their scheduler's ``add_noise``."""
    return pipeline.scheduler.add_noise(latents, noise, torch.tensor([timestep]))


# -- the UNet families -----------------------------------------------------------------------

NO_GUIDANCE = "autosel takes features from the conditional branch: classifier-free guidance off"


def ddpm_calls(name: str, component: str, change: Callable[[Any], Any] | None = None, **extra: Any):
    """(autosel's call, its output, the pipeline's call, its output) of twin ``name`` at the first
    timestep of a 2-step grid: the pipeline is given autosel's noisy latent through ``latents=``
    (no guidance: NO_GUIDANCE); ``extra`` goes to the pipeline as well."""
    pipeline, denoiser, latents, noise = prepared(name, change)
    timestep = ddpm_first_timestep(pipeline, 2)
    ours, our_output = autosel_call(denoiser, latents, noise, timestep)
    theirs, their_output = pipeline_call(
        pipeline, component, prompt=PROMPT, height=SIZE, width=SIZE, num_inference_steps=2,
        latents=noisy_ddpm(pipeline, latents, noise, timestep), guidance_scale=1.0, output_type="latent", **extra,
    )
    return ours, our_output, theirs, their_output


def test_sd_denoiser_call_equals_the_stable_diffusion_pipeline():
    ours, our_output, theirs, their_output = ddpm_calls("tiny-random", "unet")
    assert_same_call(ours, theirs)
    assert_same_output(our_output, their_output)


def test_sdxl_denoiser_call_equals_the_stable_diffusion_xl_pipeline():
    ours, our_output, theirs, their_output = ddpm_calls("tiny-xl-random", "unet")
    assert_same_call(ours, theirs)
    assert_same_output(our_output, their_output)


PLAYGROUND_V25_LATENTS = {  # Playground v2.5's VAE config (playgroundai/playground-v2.5-1024px-aesthetic)
    "latents_mean": [-1.6574, 1.886, -1.383, 2.5155], "latents_std": [8.4927, 5.9022, 6.5498, 5.2299],
    "scaling_factor": 0.5,
}


def with_latent_statistics(pipeline: Any) -> Any:
    """The SDXL twin's VAE with Playground v2.5's per-channel ``latents_mean``/``latents_std``, made
    deterministic (posterior log-variance −30): the img2img pipeline samples the posterior where
    autosel takes its mean on purpose, and with σ ≈ 3e-7 the two agree."""
    from diffusers import AutoencoderKL

    config = {key: value for key, value in pipeline.vae.config.items() if not key.startswith("_")}
    vae = AutoencoderKL.from_config({**config, **PLAYGROUND_V25_LATENTS})
    vae.load_state_dict(pipeline.vae.state_dict())
    channels = vae.config.latent_channels
    with torch.no_grad():
        vae.quant_conv.weight[channels:] = 0
        vae.quant_conv.bias[channels:] = -30
    return type(pipeline)(**{**pipeline.components, "vae": vae.eval()})


def test_sdxl_vae_latents_mean_and_std_normalise_the_latent_as_the_img2img_pipeline_does():
    from diffusers import StableDiffusionXLImg2ImgPipeline

    pipeline, denoiser, latents, _ = prepared("tiny-xl-random", with_latent_statistics)
    assert pipeline.vae.config.latents_mean == PLAYGROUND_V25_LATENTS["latents_mean"]
    img2img = StableDiffusionXLImg2ImgPipeline(**pipeline.components)
    # the pipeline draws the posterior sample first, then the noise, from one generator
    generator = torch.Generator().manual_seed(SEED)
    torch.randn(latents.shape, generator=generator)
    noise = torch.randn(latents.shape, generator=generator)
    timestep = ddpm_first_timestep(pipeline, 2)
    ours, our_output = autosel_call(denoiser, latents, noise, timestep)
    theirs, their_output = pipeline_call(
        img2img, "unet", prompt=PROMPT, image=image(), strength=1.0, num_inference_steps=2, guidance_scale=1.0,
        generator=torch.Generator().manual_seed(SEED), output_type="latent",
    )
    assert_same_output(our_output, their_output, atol=1e-4)  # (z − mean)·scaling_factor/std changes the input
    assert_same_call(ours, theirs, atol=1e-4)


PLAYGROUND_V25_SCHEDULER = {  # its scheduler/scheduler_config.json: EDM, σ from 80 down to 0.002
    "sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 0.5, "sigma_schedule": "karras", "rho": 7.0,
    "num_train_timesteps": 1000, "prediction_type": "epsilon", "solver_order": 2, "final_sigmas_type": "zero",
}


def test_pgv25_ships_the_vae_statistics_and_edm_scheduler_these_tests_use():
    import json
    from importlib import resources

    shipped = json.loads(resources.files("autosel.models").joinpath("configs", "pgv25.json").read_text())
    assert {key: shipped["vae"][key] for key in PLAYGROUND_V25_LATENTS} == PLAYGROUND_V25_LATENTS
    assert shipped["scheduler"]["_class_name"] == "EDMDPMSolverMultistepScheduler"
    assert {key: shipped["scheduler"][key] for key in PLAYGROUND_V25_SCHEDULER} == PLAYGROUND_V25_SCHEDULER


def with_edm_scheduler(pipeline: Any) -> Any:
    """The SDXL twin with Playground v2.5's EDM scheduler and VAE statistics."""
    from diffusers import EDMDPMSolverMultistepScheduler

    pipeline = with_latent_statistics(pipeline)
    return type(pipeline)(**{**pipeline.components, "scheduler": EDMDPMSolverMultistepScheduler(**PLAYGROUND_V25_SCHEDULER)})


def test_edm_model_gets_the_img2img_pipelines_sigma_preconditioning_and_timestep():
    # t is where the img2img pipeline of 1000 steps starts at strength (t + 1)/1000; given the clean
    # latent (4 channels) it noises it as x_0 + σ·ε and preconditions it, c_in·x_t at c_noise = ¼·ln σ
    from diffusers import StableDiffusionXLImg2ImgPipeline

    pipeline, denoiser, latents, noise = prepared("tiny-xl-random", with_edm_scheduler)
    timestep = 499
    ours, our_output = autosel_call(denoiser, latents, noise, timestep)
    theirs, their_output = pipeline_call(
        StableDiffusionXLImg2ImgPipeline(**pipeline.components), "unet", prompt=PROMPT, image=latents,
        strength=(timestep + 1) / 1000, num_inference_steps=1000, guidance_scale=1.0,
        generator=torch.Generator().manual_seed(SEED), output_type="latent",
    )
    assert_same_output(our_output, their_output)
    assert_same_call(ours, theirs)


def test_deepfloyd_if_denoiser_call_equals_the_if_pipeline():
    # IFPipeline takes no latents: it starts from its own draw x_T. A mid-grey image (x_0 = 0 in
    # pixel space) noised with that draw over √(1 − ᾱ_t) gives autosel the same x_t.
    pipeline, denoiser, _, _ = prepared("tiny-if-random")
    timestep = 500
    pixels = torch.full((1, 3, SIZE, SIZE), 0.5)
    start = seeded_noise((1, 3, SIZE, SIZE))
    alpha_bar = pipeline.scheduler.alphas_cumprod[timestep].double()
    ours, our_output = autosel_call(denoiser, denoiser.encode(pixels), (start / (1 - alpha_bar).sqrt()).float(), timestep)
    theirs, their_output = pipeline_call(
        pipeline, "unet", prompt=PROMPT, height=SIZE, width=SIZE, timesteps=[timestep], guidance_scale=1.0,
        generator=torch.Generator().manual_seed(SEED), output_type="pt",
    )
    assert_same_call(ours, theirs)
    assert_same_output(our_output, their_output)


def test_ddpm_denoiser_call_equals_the_ddpm_pipeline():
    # DDPMPipeline takes neither latents nor timesteps: its first step is the first of its
    # scheduler's grid, from its own draw x_T; a mid-grey image gives autosel the same x_t.
    pipeline, denoiser, _, _ = prepared("tiny-ddpm-random")
    timestep = ddpm_first_timestep(pipeline, 2)
    side = int(pipeline.unet.config.sample_size)
    pixels = torch.full((1, 3, side, side), 0.5)
    start = seeded_noise((1, 3, side, side))
    alpha_bar = pipeline.scheduler.alphas_cumprod[timestep].double()
    ours, our_output = autosel_call(denoiser, denoiser.encode(pixels), (start / (1 - alpha_bar).sqrt()).float(), timestep)
    theirs, their_output = pipeline_call(
        pipeline, "unet", batch_size=1, num_inference_steps=2, generator=torch.Generator().manual_seed(SEED),
        output_type="np",
    )
    assert_same_call(ours, theirs)
    assert_same_output(our_output, their_output)


# -- the diffusion transformers --------------------------------------------------------------


def test_pixart_denoiser_call_equals_the_pixart_pipeline():
    ours, our_output, theirs, their_output = ddpm_calls(
        "tiny-pixart-random", "transformer",
        use_resolution_binning=False,  # autosel extracts at the size asked for, not a trained bin's
    )
    assert_same_call(ours, theirs)
    assert_same_output(our_output, their_output)


def with_f8_vae(pipeline: Any) -> Any:
    """The pipeline with an 8× VAE (the twins' is 4×): HunyuanDiTPipeline sizes its rotary grid
    as height // 8 whatever its VAE, right for the real model's 8× VAE only."""
    from diffusers import AutoencoderKL

    from autosel.models.tiny import VAE_CONFIG

    torch.manual_seed(SEED)
    vae = AutoencoderKL(**{**VAE_CONFIG, "down_block_types": ["DownEncoderBlock2D"] * 4,
                           "up_block_types": ["UpDecoderBlock2D"] * 4, "block_out_channels": [16, 16, 32, 32]}).eval()
    return type(pipeline)(**{**pipeline.components, "vae": vae})


def test_hunyuan_dit_denoiser_call_equals_the_hunyuan_dit_pipeline():
    ours, our_output, theirs, their_output = ddpm_calls("tiny-hunyuan-random", "transformer", with_f8_vae,
                                                        use_resolution_binning=False)
    assert_same_call(ours, theirs)
    assert_same_output(our_output, their_output)


def with_style_and_size_conditioning(pipeline: Any) -> Any:
    """Hunyuan-DiT v1.0/1.1's layout: the denoiser also takes a style and the image sizes."""
    pipeline = with_f8_vae(pipeline)
    torch.manual_seed(SEED)
    config = {key: value for key, value in pipeline.transformer.config.items() if not key.startswith("_")}
    config["use_style_cond_and_image_meta_size"] = True
    return type(pipeline)(**{**pipeline.components, "transformer": type(pipeline.transformer).from_config(config).eval()})


def test_hunyuan_dit_v1_gets_the_pipelines_image_size_conditioning_at_the_extraction_size():
    # the pipeline's original_size defaults to 1024×1024 whatever the image size; the target size is the image's
    pipeline, denoiser, latents, noise = prepared("tiny-hunyuan-random", with_style_and_size_conditioning)
    assert denoiser.module.config.use_style_cond_and_image_meta_size
    timestep = ddpm_first_timestep(pipeline, 2)
    ours, our_output = autosel_call(denoiser, latents, noise, timestep)
    theirs, their_output = pipeline_call(
        pipeline, "transformer", prompt=PROMPT, height=SIZE, width=SIZE, num_inference_steps=2,
        latents=noisy_ddpm(pipeline, latents, noise, timestep), guidance_scale=1.0, output_type="latent",
        use_resolution_binning=False,
    )
    assert_same_output(our_output, their_output)  # the sizes change what the denoiser computes
    assert_same_call(ours, theirs)


def noisy_flow(denoiser: Denoiser, latents: torch.Tensor, noise: torch.Tensor, timestep: int) -> torch.Tensor:
    """x_t = (1 − σ)·x_0 + σ·ε at autosel's σ for ``timestep`` (the pipeline's σ for the same
    t/1000 is checked through the denoiser's timestep argument)."""
    noisy, _ = denoiser.noised(latents, noise, timestep, (SIZE, SIZE))
    return noisy


def pack_2x2(latents: torch.Tensor) -> torch.Tensor:
    """B×C×h×w as the FLUX-layout pipelines pack latents: 2×2 patches, B×(h/2·w/2)×4C."""
    rows, channels, height, width = latents.shape
    return (latents.view(rows, channels, height // 2, 2, width // 2, 2).permute(0, 2, 4, 1, 3, 5)
            .reshape(rows, (height // 2) * (width // 2), channels * 4))


def sd3_calls(pipeline: Any, denoiser: Denoiser, latents: torch.Tensor, noise: torch.Tensor, timestep: int, **options: Any):
    """autosel's and the SD3 pipeline's first transformer call at ``timestep`` (one flow step, no
    guidance); ``options`` go to the pipeline: ((our call, our output), (theirs, their output))."""
    ours = autosel_call(denoiser, latents, noise, timestep)
    theirs = pipeline_call(
        pipeline, "transformer", prompt=PROMPT, height=SIZE, width=SIZE, num_inference_steps=1,
        sigmas=[timestep / 1000], latents=noisy_flow(denoiser, latents, noise, timestep), guidance_scale=1.0,
        output_type="latent", **options,
    )
    return ours, theirs


def test_sd3_denoiser_call_equals_the_stable_diffusion_3_pipeline():
    pipeline, denoiser, latents, noise = prepared("tiny-sd3-random")
    # the tiny SD3 models share one 16-token CLIP tokenizer for all three encoders, whose
    # context autosel keeps (tiny-dit was trained at it); real checkpoints get the pipeline's 256
    (ours, our_output), (theirs, their_output) = sd3_calls(pipeline, denoiser, latents, noise, 260, max_sequence_length=16)
    assert_same_call(ours, theirs)
    assert_same_output(our_output, their_output)


def with_t5_tokenizer(pipeline: Any) -> Any:
    """The SD3 twin with a T5 tokenizer (on the twin's vocabulary) whose ``model_max_length`` is
    77, as a real checkpoint's may be: the pipeline pads the T5 prompt to its 256 regardless."""
    from transformers import T5Tokenizer

    clip = pipeline.tokenizer_3
    t5 = T5Tokenizer(tokenizer_object=clip.backend_tokenizer, model_max_length=77, pad_token=clip.pad_token,
                     eos_token=clip.eos_token, unk_token=clip.unk_token, extra_ids=0)
    return type(pipeline)(**{**pipeline.components, "tokenizer_3": t5})


def test_sd3_t5_prompt_has_the_pipelines_default_length_not_the_tokenizers_maximum():
    pipeline, denoiser, latents, noise = prepared("tiny-sd3-random", with_t5_tokenizer)
    # max_sequence_length left at the pipeline's default
    (ours, our_output), (theirs, their_output) = sd3_calls(pipeline, denoiser, latents, noise, 260)
    clip_tokens = pipeline.tokenizer.model_max_length
    assert theirs["encoder_hidden_states"].shape[1] == clip_tokens + 256
    assert_same_output(our_output, their_output)  # SD3 attends to every T5 token, padding included
    assert_same_call(ours, theirs)


def test_flux_denoiser_call_equals_the_flux_pipeline():
    pipeline, denoiser, latents, noise = prepared("tiny-flux-random")
    timestep = 260
    ours, our_output = autosel_call(denoiser, latents, noise, timestep)
    theirs, their_output = pipeline_call(
        pipeline, "transformer", prompt=PROMPT, height=SIZE, width=SIZE, num_inference_steps=1,
        sigmas=[timestep / 1000], latents=pack_2x2(noisy_flow(denoiser, latents, noise, timestep)),
        output_type="latent",  # FLUX.1 has no classifier-free guidance (true_cfg_scale 1): its default
    )
    assert_same_call(ours, theirs)
    assert_same_output(our_output, their_output)


def without_shift_terminal(pipeline: Any) -> Any:
    """The pipeline with its scheduler's ``shift_terminal`` off, as autosel runs it on purpose: on a
    one-step schedule it would put every t at σ = shift_terminal (see autosel.models.calls)."""
    pipeline.scheduler = type(pipeline.scheduler).from_config(pipeline.scheduler.config, shift_terminal=None)
    return pipeline


def test_generic_path_denoiser_call_equals_the_qwen_image_pipeline():
    pipeline, denoiser, latents, noise = prepared("tiny-qwen-image-random", without_shift_terminal)
    timestep = 260
    ours, our_output = autosel_call(denoiser, latents, noise, timestep)
    theirs, their_output = pipeline_call(
        pipeline, "transformer", prompt=PROMPT, height=SIZE, width=SIZE, num_inference_steps=1,
        sigmas=[timestep / 1000], latents=pack_2x2(noisy_flow(denoiser, latents, noise, timestep)),
        output_type="latent",
    )
    assert_same_call(ours, theirs)
    assert_same_output(our_output, their_output)


# -- dit-in: what the denoiser was given ------------------------------------------------------

TRANSFORMERS = ["tiny-pixart-random", "tiny-hunyuan-random", "tiny-sd3-random", "tiny-flux-random",
                "tiny-qwen-image-random", "tiny-z-image-random"]
"""Each family, and the generic path's packed tokens (Qwen-Image) and per-image latents with a frame axis (Z-Image)."""


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_dit_in_is_the_first_point_of_every_transformer_catalogue_on_the_latent_grid(name):
    from autosel.catalog import list_activations
    from autosel.models import Architecture

    architecture = Architecture.from_pipeline(load_pipeline(name))
    first = list_activations(name, SIZE)[0]
    assert (first.id, first.depth) == ("dit-in", 0.0)
    assert (first.channels, first.height, first.width) == (architecture.latent_channels, *architecture.latent_size(SIZE))


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_dit_in_equals_the_noisy_latent_autosel_feeds_the_denoiser(name):
    pipeline, denoiser, latents, noise = prepared(name)
    point = {point.id: point for point in denoiser.catalogue(SIZE)}["dit-in"]
    captured = denoiser.capture(latents, noise.unsqueeze(1), 260, {"dit-in": point}, prompt=PROMPT, image_hw=(SIZE, SIZE))
    noisy, _ = denoiser.noised(latents, noise, 260, (SIZE, SIZE), PROMPT)
    assert captured["dit-in"].shape == latents.shape
    assert torch.equal(captured["dit-in"], noisy)
