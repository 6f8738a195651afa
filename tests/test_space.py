"""Search space files: the shipped ones are valid for their models, typos are errors."""

from __future__ import annotations

import pytest

from autosel.candidates import SpaceCatalogue, select_candidates
from autosel.catalog import list_activations
from autosel.config import ConfigError
from autosel.space import SearchSpace, load_space, space_file

SHIPPED = ("tiny", "sd15", "sd21", "sdxl", "sdxl-turbo")


@pytest.mark.parametrize("model", SHIPPED)
def test_each_shipped_space_selects_candidates_from_its_models_catalogue(model):
    space = load_space(model)
    assert space.model == model and space_file(model) is not None
    catalogue = list_activations(model, space.image_size)
    chosen = select_candidates(catalogue, space.candidates.include, space.candidates.exclude, model)
    assert chosen and not any(p.id.endswith("-map") for p in chosen)


def test_sdxl_pool_leaves_out_self_attention_v():
    space = load_space("sdxl")
    chosen = select_candidates(list_activations("sdxl", 1024), space.candidates.include, space.candidates.exclude, "sdxl")
    assert all(p.stage == "up" and not p.id.endswith("self-v") for p in chosen)


def test_an_unknown_key_is_an_error_naming_it_and_the_valid_ones(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("model: tiny\nsearch:\n  top_n: 3\n")
    with pytest.raises(ConfigError, match=r"search.top_n: unknown field. Did you mean 'top_m'"):
        SearchSpace.from_yaml(path)


def test_timesteps_are_deduplicated_and_sorted():
    assert SearchSpace(model="tiny", timesteps=[50, 10, 50]).timesteps == [10, 50]


def test_models_without_a_file_get_the_generic_space():
    space = load_space("someone/new-model")
    assert space.candidates.include == ["up-*"] and space.timesteps == [10, 50, 150, 300, 500]


def test_a_transformer_without_a_file_screens_every_block_also_without_massive_channels():
    space = load_space("tiny-sd3-random")
    assert space.candidates.include == ["vit-block*"] and space.candidates.post == ["none", "drop-massive"]


def test_a_space_catalogue_holds_each_screened_point_once_per_post_variant():
    space = SearchSpace(model="tiny", image_size=64, candidates={"include": ["mid-*"], "exclude": ["*-map"],
                                                                  "post": ["none", "drop-massive"]})
    catalogue = SpaceCatalogue.of(space)
    screened = [point.id for point in catalogue.screened]
    assert screened and catalogue.ids == [name for point in screened for name in (point, f"{point}:drop-massive")]


def test_a_variant_name_has_its_points_channels():
    space = SearchSpace(model="tiny", image_size=64, candidates={"include": ["mid-*"], "post": ["none", "drop-massive"]})
    catalogue = SpaceCatalogue.of(space)
    point = catalogue.screened[0]
    assert catalogue.channels([point.id, f"{point.id}:drop-massive"]) == 2 * point.channels


def test_a_loaded_models_points_give_the_same_candidates_as_the_config():
    space = SearchSpace(model="tiny", image_size=64)
    measured = SpaceCatalogue.of(space)
    assert SpaceCatalogue.of(space, measured.points.values()).ids == measured.ids
