"""Model references resolve to specs, and bad references fail with a useful message."""

from __future__ import annotations

import pytest

from autosel.errors import NotAPipelineError, UnknownModelError
from autosel.models import REGISTRY, resolve_model


@pytest.mark.parametrize(
    ("name", "hub_id", "family", "resolution"),
    [
        ("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", "sd", 512),
        ("sd21", "stabilityai/stable-diffusion-2-1-base", "sd", 512),
        ("sdxl", "stabilityai/stable-diffusion-xl-base-1.0", "sdxl", 1024),
        ("sdxl-turbo", "stabilityai/sdxl-turbo", "sdxl", 512),
    ],
)
def test_registry_names_resolve_to_their_hub_ids(name, hub_id, family, resolution):
    spec = resolve_model(name)
    assert (spec.hub_id, spec.family, spec.resolution) == (hub_id, family, resolution)


def test_builtin_tiny_models_are_registered():
    assert {"tiny", "tiny-random", "tiny-xl-random"} <= set(REGISTRY)
    assert resolve_model("tiny-xl-random").family == "sdxl"


def test_any_hub_id_is_accepted_without_network():
    spec = resolve_model("someone/new-diffusion-model")
    assert (spec.source, spec.hub_id) == ("hub", "someone/new-diffusion-model")


def test_unknown_name_lists_known_names_and_the_closest_match():
    with pytest.raises(UnknownModelError) as caught:
        resolve_model("sdxll")
    message = str(caught.value)
    assert "Did you mean 'sdxl'" in message
    assert all(name in message for name in REGISTRY)


def test_folder_without_pipeline_says_what_was_expected(tmp_path):
    with pytest.raises(NotAPipelineError, match="model_index.json"):
        resolve_model(str(tmp_path))


def test_missing_path_is_reported_as_a_path(tmp_path):
    with pytest.raises(NotAPipelineError, match="not a folder"):
        resolve_model(str(tmp_path / "nowhere"))


def test_pipeline_folder_resolves_with_its_family(tiny_xl_folder):
    spec = resolve_model(str(tiny_xl_folder))
    assert (spec.source, spec.family) == ("folder", "sdxl")
