"""Registry models of the generic path: catalogued offline from shipped pipeline configs, and
local folders catalogued from their configs alone."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from autosel.catalog import list_activations
from autosel.models import REGISTRY, load_architecture, resolve_model
from autosel.models.tiny import build_tiny_pipeline

GENERIC_MODELS = sorted(name for name, spec in REGISTRY.items() if spec.source == "registry" and spec.family == "generic")


def _shipped(name: str) -> dict:
    return json.loads(resources.files("autosel.models").joinpath("configs", f"{name}.json").read_text())


def _configured_blocks(name: str) -> int:
    """Image-token blocks the shipped denoiser config declares (the discovery must find each)."""
    config = _shipped(name)["components"]["transformer"][2]
    # refiners of the noise (Z-Image's, Lumina 2's) run on image tokens; caption refiners do not
    for keys in (("num_layers", "num_single_layers", "num_refiner_layers"), ("n_layers", "n_refiner_layers")):
        if keys[0] in config:
            return sum(int(config.get(key, 0)) for key in keys)
    raise AssertionError(f"no layer count in {name}'s shipped config")


def test_six_or_more_models_of_2025_26_are_registered_for_the_generic_path():
    assert len(GENERIC_MODELS) >= 6, GENERIC_MODELS


@pytest.mark.slow
@pytest.mark.parametrize("name", GENERIC_MODELS)
def test_a_generic_registry_model_lists_every_configured_block_offline(name, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: the shipped configs are all there is
    points = list_activations(name)
    outs = [point.id for point in points if point.kind == "vit-block-out"]
    assert outs == [f"vit-block{i}-out" for i in range(_configured_blocks(name))]
    side = REGISTRY[name].resolution
    assert load_architecture(resolve_model(name)).native_resolution == side


def test_a_generic_folder_is_catalogued_from_its_configs_without_loading_its_weights(tmp_path, monkeypatch):
    folder = tmp_path / "my-chroma"
    build_tiny_pipeline("tiny-chroma-random").save_pretrained(folder)

    def no_weights(*args, **kwargs):
        raise AssertionError("the catalogue loaded the pipeline's weights")

    monkeypatch.setattr("autosel.models.loading.load_pipeline", no_weights)
    monkeypatch.setattr("diffusers.DiffusionPipeline.from_pretrained", no_weights)
    architecture = load_architecture(resolve_model(str(folder)))
    assert architecture.calls().transformer.device.type == "meta"
    outs = [point.id for point in list_activations(architecture, 64) if point.kind == "vit-block-out"]
    assert outs == ["vit-block0-out", "vit-block1-out", "vit-block2-out"]
