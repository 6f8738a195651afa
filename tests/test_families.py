"""Every model family through one engine: registry, offline catalogues, extraction of the random
twins (built in and saved as folders), noise processes, early exit, errors."""

from __future__ import annotations

import json
import re

import pytest
import torch

from autosel.catalog import list_activations
from autosel.config import FeatureConfig
from autosel.denoiser import Denoiser, DenoiserRun
from autosel.errors import NotAPipelineError, UnsupportedModelError, WeightsUnavailableError
from autosel.extract import FeatureExtractor
from autosel.models import REGISTRY, load_pipeline, resolve_model
from autosel.models.tiny import TWINS

TRANSFORMER_TWINS = ["tiny-pixart-random", "tiny-sd3-random", "tiny-flux-random", "tiny-hunyuan-random"]
DIT_ID = re.compile(r"^(dit-in|vit-block(\d+)-(norm-in|self-q|self-k|self-v|self-map|cross-q|cross-map|norm-out|ffn-inner|out))$")
NEW_NAMES = {
    "sd14": "sd", "sd20": "sd", "pgv2": "sdxl", "pgv25": "sdxl", "if-i-l": "if", "pixart-alpha": "pixart", "pixart-sigma": "pixart",
    "hunyuan-dit": "hunyuan", "sd3-medium": "sd3", "sd35-medium": "sd3", "sd35-large": "sd3", "flux-dev": "flux",
    "flux-schnell": "flux", "tiny-pixart-random": "pixart", "tiny-sd3-random": "sd3", "tiny-flux-random": "flux",
    "tiny-if-random": "if", "tiny-ddpm-random": "ddpm", "tiny-hunyuan-random": "hunyuan",
}


def single(model: str, activation: str, timestep: int = 260, **extraction) -> FeatureConfig:
    return FeatureConfig.from_dict({
        "model": {"name": model}, "extraction": {"image_size": 64, **extraction},
        "activations": [{"id": activation, "timestep": timestep}],
    })


@pytest.mark.parametrize(("name", "family"), sorted(NEW_NAMES.items()))
def test_registry_lists_each_family_model(name, family):
    assert resolve_model(name).family == family


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(n for n, s in REGISTRY.items() if s.source == "registry" and n != "if-i-l"))
def test_every_registry_model_has_an_offline_catalogue(name):
    points = list_activations(name)
    assert points and all(0.0 <= p.depth <= 1.0 for p in points)
    if REGISTRY[name].family in {"pixart", "hunyuan", "sd3", "flux"}:
        assert all(DIT_ID.match(p.id) for p in points), [p.id for p in points if not DIT_ID.match(p.id)][:3]


def test_if_without_its_cached_files_says_how_to_get_them():
    with pytest.raises(WeightsUnavailableError, match="hf download DeepFloyd/IF-I-L-v1.0"):
        list_activations("if-i-l")


def test_pixart_sigma_has_28_blocks_and_flux_57_numbered_on():
    pixart = {p.block for p in list_activations("pixart-sigma") if p.id != "dit-in"}
    flux = [p for p in list_activations("flux-dev") if p.id != "dit-in"]
    assert pixart == set(range(28))
    assert {p.block for p in flux} == set(range(57))
    single_stream = [p for p in flux if p.block == 19]
    assert {p.module.split(".")[0] for p in single_stream} == {"single_transformer_blocks"}


def test_flux_native_grid_is_the_latent_halved():
    out = next(p for p in list_activations("flux-dev") if p.id == "vit-block56-out")
    assert (out.channels, out.height, out.width) == (3072, 64, 64)


def test_transformer_points_are_in_forward_order_with_growing_depth():
    points = list_activations("sd3-medium")
    assert [p.depth for p in points] == sorted(p.depth for p in points)
    assert [p.id for p in points[:2]] == ["dit-in", "vit-block0-norm-in"] and points[-1].id == "vit-block23-out"


def test_norm_in_is_marked_beyond_the_seed_set():
    points = {p.id: p for p in list_activations("pixart-alpha")}
    assert points["vit-block3-norm-in"].extra and not points["vit-block3-out"].extra


@pytest.mark.parametrize("name", TWINS)
def test_every_twin_extracts_what_its_catalogue_announces(name):
    points = list_activations(name, (64, 96))
    chosen = [points[len(points) // 2], points[-1]]
    config = FeatureConfig.from_dict({
        "model": {"name": name}, "extraction": {"image_size": [64, 96]},
        "activations": [{"id": p.id, "timestep": 260} for p in chosen],
    })
    features = FeatureExtractor(config, device="cpu")(torch.rand(2, 3, 64, 96))
    for point in chosen:
        assert tuple(features[point.id].shape) == (2, point.channels, point.height, point.width)
        assert torch.isfinite(features[point.id]).all()


@pytest.mark.parametrize("name", TRANSFORMER_TWINS)
def test_transformer_tokens_fold_onto_a_non_square_patch_grid(name):
    out = [p for p in list_activations(name, (64, 96)) if p.kind == "vit-block-out"][-1]
    assert (out.height, out.width) == (8, 12)  # 64x96 px / VAE 4 / patch 2


@pytest.mark.parametrize("name", TRANSFORMER_TWINS)
def test_same_config_and_seed_give_identical_transformer_features(name):
    config = single(name, "vit-block1-out")
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    first = FeatureExtractor(config, device="cpu")(images)["vit-block1-out"]
    again = FeatureExtractor(config, device="cpu")(images)["vit-block1-out"]
    assert torch.equal(first, again)


@pytest.mark.parametrize("name", TRANSFORMER_TWINS)
def test_a_saved_transformer_folder_extracts_as_the_built_in_twin(name, tmp_path):
    load_pipeline(name).save_pretrained(tmp_path)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    built_in = FeatureExtractor(single(name, "vit-block0-out"), device="cpu")(images)
    from_folder = FeatureExtractor(single(str(tmp_path), "vit-block0-out"), device="cpu")(images)
    assert resolve_model(str(tmp_path)).family == REGISTRY[name].family
    assert torch.allclose(built_in["vit-block0-out"], from_folder["vit-block0-out"], atol=1e-5)


def test_early_exit_skips_the_blocks_after_the_deepest_id():
    extractor = FeatureExtractor(single("tiny-flux-random", "vit-block1-out"), device="cpu")
    later = []
    handle = extractor.unet.single_transformer_blocks[1].register_forward_hook(lambda *_: later.append(1))
    try:
        extractor(torch.rand(1, 3, 64, 64))
    finally:
        handle.remove()
    assert later == []


def test_flow_noise_uses_the_scheduler_sigma_with_its_shift():
    from diffusers import FlowMatchEulerDiscreteScheduler

    denoiser = Denoiser.load("tiny-sd3-random", device="cpu")
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(denoiser.pipeline.scheduler.config)
    latents, noise = torch.randn(1, 4, 16, 16), torch.randn(1, 4, 16, 16)
    for timestep in (100, 260, 900):
        sigma = float(scheduler.sigmas[scheduler.config.num_train_timesteps - timestep])
        noisy, model_timestep = denoiser.noised(latents, noise, timestep)
        assert torch.allclose(noisy, (1 - sigma) * latents + sigma * noise, atol=1e-6)
        assert model_timestep.item() == pytest.approx(sigma * 1000, rel=1e-5)


def test_flux_shift_depends_on_the_token_count_as_the_scheduler_maps_it():
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    denoiser = Denoiser.load("tiny-flux-random", device="cpu")
    config = denoiser.pipeline.scheduler.config
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(config)
    latents = torch.zeros(1, 4, 64, 64)  # 32x32 = 1024 tokens after packing
    mu = calculate_shift(1024, config.base_image_seq_len, config.max_image_seq_len, config.base_shift, config.max_shift)
    expected = float(scheduler.time_shift(mu, 1.0, torch.tensor(0.26)))
    _, model_timestep = denoiser.noised(latents, torch.ones_like(latents), 260)
    assert model_timestep.item() == pytest.approx(expected, rel=1e-5)  # FLUX takes σ itself


def test_pixel_space_families_encode_pixels_not_latents():
    run = DenoiserRun(Denoiser.load("tiny-if-random", device="cpu"), batch_size=2)
    pixels = torch.rand(2, 3, 64, 64)
    assert run.denoiser.vae is None
    assert torch.equal(run.encode(pixels), pixels * 2 - 1)


def test_text_conditioning_is_computed_once_per_prompt():
    denoiser = Denoiser.load("tiny-sd3-random", device="cpu")
    calls = []
    handle = denoiser.pipeline.text_encoder_3.register_forward_hook(lambda *_: calls.append(1))
    try:
        run = DenoiserRun(denoiser, batch_size=1)
        latents, noise = run.latents_and_noise(torch.rand(2, 3, 64, 64))
        for timestep in (50, 260):
            run.capture_at(latents, noise, timestep, ["vit-block0-out"])
    finally:
        handle.remove()
    assert len(calls) == 1


def _folder_with_denoiser(tmp_path, component: str, config: dict):
    (tmp_path / component).mkdir()
    (tmp_path / component / "config.json").write_text(json.dumps(config))
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "SomePipeline", component: ["diffusers", config["_class_name"]]}))
    return tmp_path


def test_a_folder_of_an_unknown_family_names_its_class_and_the_supported_ones(tmp_path):
    folder = _folder_with_denoiser(tmp_path, "transformer", {"_class_name": "MadeUpTransformer2DModel"})
    with pytest.raises(UnsupportedModelError) as caught:
        resolve_model(str(folder))
    message = str(caught.value)
    assert "MadeUpTransformer2DModel" in message and "FluxTransformer2DModel (flux)" in message and "\n" not in message


def test_a_folder_missing_its_denoiser_config_names_the_file(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline", "transformer": ["diffusers", "X"]}))
    with pytest.raises(NotAPipelineError, match="transformer/config.json"):
        resolve_model(str(tmp_path))


def test_models_command_lists_every_family(run_cli):
    result = run_cli("models", "--format", "json")
    assert result.returncode == 0, result.stderr
    listed = {row["name"]: row["family"] for row in json.loads(result.stdout)}
    assert all(listed.get(name) == family for name, family in NEW_NAMES.items())
