"""The generic path: diffusers transformers with no adapter written for them."""

from __future__ import annotations

import pytest
import torch

from autosel.catalog import measure_catalogue
from autosel.config import ExtractionSection
from autosel.denoiser import Denoiser, DenoiserRun
from autosel.models import resolve_model
from autosel.models.architecture import Architecture, load_architecture, with_pipeline_calls
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


def test_the_generic_path_gives_the_flux_adapters_features_on_its_twin():
    pipeline = build_tiny_pipeline("tiny-flux-random")
    config = {**pipeline.transformer.config, "_class_name": "FluxTransformer2DModel"}
    generic = with_pipeline_calls(Architecture(config, "generic", source="flux twin, generic"), lambda: pipeline)
    by_adapter = DenoiserRun(Denoiser.load("tiny-flux-random", device="cpu"), ExtractionSection(image_size=64))
    by_generic = DenoiserRun(Denoiser(pipeline, device="cpu", architecture=generic), ExtractionSection(image_size=64))
    shared = sorted(set(by_adapter.catalogue) & set(by_generic.catalogue))
    assert len(shared) >= 10
    a = by_adapter.extract_timesteps(_images(), {260: shared})[260]
    b = by_generic.extract_timesteps(_images(), {260: shared})[260]
    for point_id in shared:
        torch.testing.assert_close(a[point_id], b[point_id], atol=1e-5, rtol=1e-4)


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
    table = (tmp_path / "tiny-chroma-random" / "correspondence" / "sweep.csv").read_text()
    assert "vit-block0-out" in table and "vit-block0-norm-in" in table
