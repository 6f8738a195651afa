"""Multi-timestep fusion: one activation id at several timesteps in one config and in the search."""

from __future__ import annotations

import json

import optuna
import pytest
import torch

from autosel.config import FeatureConfig
from autosel.evaluation import evaluate_config
from autosel.extract import FeatureExtractor
from autosel.gdf import export_gdf
from autosel.optimise.selection import Candidate, suggest
from autosel.optimise.strategies import make_strategy
from autosel.space import SearchSpace
from autosel.tasks import CorrespondenceTask

ID = "up-level1-repeat0-res-increment"
OTHER = "up-level1-repeat1-res-out"


def fused(model="tiny", image_size=64, levels=({"timestep": 50}, {"timestep": 300})):
    return FeatureConfig.from_dict({
        "model": {"name": model}, "extraction": {"image_size": image_size},
        "activations": [{"id": ID, **level} for level in levels],
    })


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    return FeatureExtractor(fused(), device="cpu", batch_size=16)


def test_one_id_at_two_timesteps_extracts_two_distinct_maps_keyed_by_timestep(extractor):
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    features = extractor(images)
    assert list(features) == [f"{ID}@50", f"{ID}@300"]
    assert not torch.allclose(features[f"{ID}@50"], features[f"{ID}@300"])
    alone = FeatureExtractor(fused(levels=({"timestep": 300},)), device="cpu")(images)
    assert torch.equal(alone[ID], features[f"{ID}@300"])  # the same map as a one-timestep config's


def test_the_two_timesteps_of_one_id_are_aggregated_side_by_side(extractor):
    features = extractor(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    combined = extractor.combine(features)
    assert combined.shape[1] == 2 * features[f"{ID}@50"].shape[1]


def test_a_timestep_and_a_sigma_of_one_id_are_two_activations():
    config = fused(levels=({"timestep": 50}, {"sigma": 0.5}))
    assert config.keys == [f"{ID}@50", f"{ID}@σ0.5"] and len(config.timesteps) == 2


def test_a_fused_config_evaluates_on_a_proxy_task(extractor):
    task = CorrespondenceTask.from_spec("shapes", role="heldout", pairs=8)
    result = evaluate_config(extractor, task, progress=False)
    assert 0.0 <= result.value <= 1.0 and result.n_items > 0


def test_the_gdf_export_writes_one_layer_file_per_timestep_with_the_id_in_each(tmp_path):
    config = fused(model="sd15", image_size=512).replace(
        activations=[{"id": "up-level1-repeat0-vit-block0-out", "timestep": t} for t in (50, 300)]
    )
    export_gdf(config, tmp_path)
    for t in (50, 300):
        assert json.loads((tmp_path / f"layers-t{t}.json").read_text()) == {"up-level1-repeat0-vit-block0-out": True}
        # gdf's t: the grid step that runs at t under sd15's shipped PNDM scheduler (see autosel.gdf_timestep)
        assert json.loads((tmp_path / f"correspondence-t{t}.json").read_text())["t"] == t - 1


def test_a_search_trial_can_propose_one_id_at_two_of_its_timesteps():
    candidates = [Candidate(ID, (50, 300), 16, 0.5), Candidate(OTHER, (50,), 16, 0.6)]
    study = optuna.create_study()
    study.enqueue_trial({"n": 2, "a0": f"{ID}@50", "a1": f"{ID}@300", "w0": 1.0, "w1": 1.0})
    selection = suggest(study.ask(), candidates, 2)
    assert [(name, t) for name, t, _ in selection.items] == [(ID, 50), (ID, 300)]
    config = selection.to_config(SearchSpace(model="tiny", image_size=64))
    assert config.keys == [f"{ID}@50", f"{ID}@300"]


def test_a_repeated_slot_at_the_same_timestep_counts_once():
    candidates = [Candidate(ID, (50, 300), 16, 0.5), Candidate(f"{ID}:drop-massive", (50,), 16, 0.5)]
    study = optuna.create_study()
    study.enqueue_trial({"n": 2, "a0": f"{ID}@50", "a1": f"{ID}:drop-massive@50", "w0": 1.0, "w1": 2.0})
    selection = suggest(study.ask(), candidates, 2)
    assert selection.items == ((ID, 50, 1.0),)  # a variant of a chosen id at its timestep is the same activation


def test_greedy_extends_the_best_single_with_its_own_other_timestep():
    candidates = [Candidate(ID, (50, 300), 16, 0.5), Candidate(OTHER, (50,), 16, 0.6)]
    strategy = make_strategy("greedy", candidates, 2, 0)
    extensions = [items for items, _ in strategy._extensions([(ID, 50)])]
    assert [(ID, 50), (ID, 300)] in extensions and [(ID, 50), (ID, 50)] not in extensions
