"""The generic path: diffusers transformers with no adapter written for them."""

from __future__ import annotations

import pytest
import torch

from autosel.catalog import measure_catalogue
from autosel.config import ExtractionSection
from autosel.denoiser import Denoiser, DenoiserRun
from autosel.models import resolve_model
from autosel.models.architecture import load_architecture
from autosel.models.families import Generic
from autosel.models.families.generic import recorder_for
from autosel.models.tiny import build_tiny_pipeline
from autosel.models.twins import TWIN_SPECS

GENERIC_TWINS = sorted(TWIN_SPECS)


def _images(count: int = 2) -> torch.Tensor:
    return torch.rand(count, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", GENERIC_TWINS)
def test_a_generic_twin_lists_its_blocks_in_forward_order(name):
    catalogue = measure_catalogue(load_architecture(resolve_model(name)), 64)
    outs = [point.id for point in catalogue if point.kind == "vit-block-out"]
    assert outs and outs == [f"vit-block{i}-out" for i in range(len(outs))]
    assert [point.depth for point in catalogue] == sorted(point.depth for point in catalogue)


@pytest.mark.parametrize("name", GENERIC_TWINS)
def test_generic_features_have_the_catalogued_shapes_and_do_not_depend_on_the_batch(name):
    run = DenoiserRun(Denoiser.load(name, device="cpu"), ExtractionSection(image_size=64))
    latents, noise = run.latents_and_noise(_images())
    ids = list(run.catalogue)
    both = run.capture_at(latents, noise, 260, ids)
    alone = run.capture_at(latents[:1], noise[:1], 260, ids)
    for point_id in ids:
        point = run.catalogue[point_id]
        assert tuple(both[point_id].shape) == (2, point.channels, point.height, point.width), point_id
        torch.testing.assert_close(both[point_id][:1], alone[point_id], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", GENERIC_TWINS)
def test_generic_features_are_deterministic(name):
    first = DenoiserRun(Denoiser.load(name, device="cpu"), ExtractionSection(image_size=64))
    second = DenoiserRun(Denoiser.load(name, device="cpu"), ExtractionSection(image_size=64))
    ids = [point_id for point_id in first.catalogue if point_id.endswith("-out")]
    a = first.extract_timesteps(_images(), {500: ids})[500]
    b = second.extract_timesteps(_images(), {500: ids})[500]
    for point_id in ids:
        assert torch.equal(a[point_id], b[point_id])


# not SD3's: its adapter gives the T5 the tokenizer's length (16 on the twin), its pipeline 256
# padding tokens, which joint attention does not mask; a known difference of the adapter's
@pytest.mark.parametrize("twin", ["tiny-flux-random", "tiny-pixart-random"])
def test_the_generic_path_gives_the_adapters_features_on_its_twin(twin):
    pipeline = build_tiny_pipeline(twin)
    config = {**pipeline.transformer.config, "_class_name": type(pipeline.transformer).__name__}
    generic = Generic(config, source=f"{twin}, generic").bind_pipeline(lambda: pipeline)
    by_adapter = DenoiserRun(Denoiser.load(twin, device="cpu"), ExtractionSection(image_size=64))
    by_generic = DenoiserRun(Denoiser(pipeline, device="cpu", architecture=generic), ExtractionSection(image_size=64))
    shared = sorted(set(by_adapter.catalogue) & set(by_generic.catalogue))
    assert len(shared) >= 10
    a = by_adapter.extract_timesteps(_images(), {260: shared})[260]
    b = by_generic.extract_timesteps(_images(), {260: shared})[260]
    for point_id in shared:
        torch.testing.assert_close(a[point_id], b[point_id], atol=1e-5, rtol=1e-4, msg=point_id)


def test_a_saved_pipeline_of_a_family_without_an_adapter_is_catalogued_from_its_folder(tmp_path, run_cli):
    folder = tmp_path / "my-chroma"
    build_tiny_pipeline("tiny-chroma-random").save_pretrained(folder)
    outcome = run_cli("catalog", "--model", str(folder), "--image-size", "64", "--filter", "vit-block*-out")
    assert outcome.code == 0, outcome.stderr
    assert "vit-block0-out" in outcome.stdout and "vit-block2-out" in outcome.stdout


@pytest.mark.slow
def test_a_generic_twin_is_swept_from_the_command_line(tmp_path, run_cli):
    outcome = run_cli(
        "sweep", "--model", "tiny-chroma-random", "--timesteps", "260", "--include", "vit-block0-*",
        "--out", str(tmp_path), "--no-progress",
    )
    assert outcome.code == 0, outcome.stderr
    table = next((tmp_path / "tiny-chroma-random" / "correspondence").glob("sweep-*.csv")).read_text()
    assert "vit-block0-out" in table and "vit-block0-norm-in" in table


@pytest.mark.parametrize("name", GENERIC_TWINS)
def test_the_noise_level_of_a_flow_twin_grows_with_the_timestep(name):
    recorder = recorder_for(build_tiny_pipeline(name))
    if not recorder.flow:
        pytest.skip("not a rectified-flow twin")
    sigmas = [recorder.call("", (64, 64), t).sigma for t in (250, 500, 750)]
    assert 0.0 < sigmas[0] < sigmas[1] < sigmas[2] < 1.0, sigmas


def test_a_scheduler_without_custom_sigmas_is_recorded_at_its_flow_shift():
    pipeline = build_tiny_pipeline("tiny-sana-random")  # DPM-Solver on flow sigmas, flow_shift 3
    assert recorder_for(pipeline).call("", (64, 64), 250).sigma == pytest.approx(3 * 0.25 / (1 + 2 * 0.25))
    assert type(pipeline.scheduler).__name__ == "DPMSolverMultistepScheduler"


def test_a_pipeline_that_bins_resolutions_is_recorded_at_the_requested_size():
    recorded = recorder_for(build_tiny_pipeline("tiny-sana-random")).call("", (64, 96), 500)
    assert tuple(recorded.arguments[recorded.latent].shape[-2:]) == (16, 24)


def test_the_negative_prompt_is_left_at_the_pipelines_default():
    recorder = recorder_for(build_tiny_pipeline("tiny-sana-random"))  # Sana lowercases its default ""
    arguments, _ = recorder._record_once("", (64, 64), 500, batch=1, overrides={})
    assert len(arguments[recorder.call("", (64, 64), 500).latent]) == 2  # the guided call ran: prompt and negative


def test_a_guided_call_that_fails_is_recorded_with_guidance_off():
    pipeline = build_tiny_pipeline("tiny-cogview4-random")
    encode = pipeline.encode_prompt

    def unguided_only(*args, **kwargs):
        if kwargs.get("do_classifier_free_guidance"):
            raise ValueError("the negative prompt cannot be encoded")
        return encode(*args, **kwargs)

    pipeline.encode_prompt = unguided_only
    recorded = recorder_for(pipeline).call("a cat", (64, 64), 500)
    assert len(recorded.arguments[recorded.latent]) == 1


def test_a_pipeline_that_pairs_timesteps_with_sigmas_is_given_both():
    recorder = recorder_for(build_tiny_pipeline("tiny-cogview4-random"))  # the denoiser is told the unshifted t, σ is shifted
    recorded = recorder.call("a cat", (64, 64), 250)
    assert float(recorded.arguments[recorded.timestep].reshape(-1)[0]) == 250.0
    assert 0.0 < recorded.sigma < 0.25


def test_a_pipeline_that_refuses_timesteps_with_sigmas_is_given_sigmas_alone():
    recorder = recorder_for(build_tiny_pipeline("tiny-flux2-random"))  # takes both, accepts one
    recorded = recorder.call("", (64, 64), 500)
    assert float(recorded.arguments[recorded.timestep].reshape(-1)[0]) == pytest.approx(recorded.sigma)


def test_a_convolutional_feed_forward_is_tapped_on_its_token_map():
    catalogue = {point.id: point for point in measure_catalogue(load_architecture(resolve_model("tiny-sana-random")), 64)}
    assert (catalogue["vit-block0-norm-out"].channels, catalogue["vit-block0-norm-out"].height) == (32, 16)
    assert catalogue["vit-block0-ffn-inner"].channels == 80  # GLUMBConv's hidden width, 2.5 × 32


def test_integer_inputs_stay_real_in_shape_only_forwards():
    architecture = load_architecture(resolve_model("tiny-lumina2-random"))  # counts caption tokens from its mask
    recorded = recorder_for(build_tiny_pipeline("tiny-lumina2-random")).call("", (64, 64), 500).on_meta()
    assert recorded.arguments["encoder_attention_mask"].device.type == "cpu"
    with torch.device("meta"):
        sample = torch.zeros(1, 16, 8, 8)
    args, kwargs = recorded.replay(sample, recorded.timestep_input(1, "meta"))
    with torch.no_grad():
        output = architecture.build_denoiser("meta")(*args, **kwargs)
    assert output[0][0].shape == (16, 8, 8)


def test_blocks_whose_attention_fuses_its_query_projection_are_found():
    catalogue = measure_catalogue(load_architecture(resolve_model("tiny-flux2-random")), 64)  # to_qkv_mlp_proj
    outs = [point.id for point in catalogue if point.kind == "vit-block-out"]
    assert outs == ["vit-block0-out", "vit-block1-out", "vit-block2-out"]
