"""The feature config: validation, YAML round trip, one-line errors, literature presets."""

from __future__ import annotations

from pathlib import Path

import pytest

from autosel.catalog import list_activations
from autosel.config import ConfigError, FeatureConfig, mask_password

PRESETS = sorted((Path(__file__).parents[1] / "results" / "presets").glob("*.yaml"))


def minimal(**sections):
    data = {"model": {"name": "tiny"}, "activations": [{"id": "up-level1-repeat0-res-out", "timestep": 50}]}
    data.update(sections)
    return data


def test_yaml_round_trip_is_lossless(tmp_path):
    config = FeatureConfig.from_dict(
        minimal(
            extraction={"image_size": [64, 96], "prompt": "a photo", "noise_seed": 3, "ensemble": 2},
            aggregation={"resolution": 8, "combine": "concat", "pca_dim": 16},
            score={"task": "correspondence", "dataset": "shapes", "split": "heldout", "metric": "pck@0.1",
                   "normalisation": "bbox", "averaging": "per-point", "value": 0.5, "presets": {"dift": 0.4}},
        )
    )
    path = tmp_path / "config.yaml"
    config.to_yaml(path)
    assert FeatureConfig.from_yaml(path) == config


def test_config_is_immutable():
    config = FeatureConfig.from_dict(minimal())
    with pytest.raises(Exception):
        config.model = None  # type: ignore[misc]


def test_timesteps_are_distinct_and_sorted():
    config = FeatureConfig.from_dict(
        minimal(activations=[{"id": "a", "timestep": 200}, {"id": "b", "timestep": 50}, {"id": "c", "timestep": 200}])
    )
    assert config.timesteps == [50, 200]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (minimal(activations=[{"id": "a", "timestep": 5000}]), "activations[0].timestep: timestep 5000 is outside the scheduler's range 0…999"),
        (minimal(activations=[{"id": "a", "timestep": 5, "wieght": 2}]), "Did you mean 'weight'?"),
        (minimal(activations=[{"id": "a", "timestep": "soon"}]), "activations[0].timestep: Input should be a valid integer"),
        (minimal(activations=[{"id": "a", "timestep": 5}, {"id": "a", "timestep": 5}]), "listed twice at noise level 5"),
        (minimal(aggregation={"combine": "mean"}), "aggregation.combine: Input should be 'concat' or 'weighted-sum'"),
        ({"activations": [{"id": "a", "timestep": 5}]}, "model: required field is missing"),
    ],
)
def test_invalid_fields_are_named_with_what_is_valid(data, expected):
    with pytest.raises(ConfigError) as caught:
        FeatureConfig.from_dict(data, source="x.yaml")
    message = str(caught.value)
    assert message.startswith("x.yaml: ") and expected in message and "\n" not in message


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no such feature config file"):
        FeatureConfig.from_yaml(tmp_path / "absent.yaml")


def test_bad_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: {name: tiny\nactivations: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML \(line"):
        FeatureConfig.from_yaml(path)


def test_yaml_objects_are_never_constructed(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("!!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        FeatureConfig.from_yaml(path)


def test_storage_passwords_are_masked():
    config = FeatureConfig.from_dict(minimal(provenance={"storage": "postgresql://me:s3cret@db:5432/optuna"}))
    assert config.provenance.storage == "postgresql://me:***@db:5432/optuna"
    assert "s3cret" not in config.to_yaml()
    assert mask_password("sqlite:///results/study.db") == "sqlite:///results/study.db"


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_presets_validate_against_their_offline_catalogues(preset):
    config = FeatureConfig.from_yaml(preset)
    config.check_ids(p.id for p in list_activations(config.model.name, config.extraction.image_size))
    assert config.provenance is not None and config.provenance.source


def test_the_expected_presets_exist():
    assert {p.stem for p in PRESETS} >= {
        "meng-practical-sd15", "meng-practical-sdxl", "meng-legacy-sd15", "meng-legacy-sdxl", "dift-sd21", "dift-sd21-768", "ditf-flux"
    }
    dift = FeatureConfig.from_yaml(PRESETS[0].with_name("dift-sd21.yaml"))
    assert (dift.ids, dift.timesteps, dift.extraction.ensemble) == (["up-level1-upsampler-out"], [261], 8)


def test_the_dift_presets_run_dift_s_setting_the_768_one_at_its_published_size():
    small, published = (FeatureConfig.from_yaml(PRESETS[0].with_name(f"{name}.yaml")) for name in ("dift-sd21", "dift-sd21-768"))
    for preset in (small, published):
        extraction = preset.extraction
        assert (extraction.prompt, extraction.vae_posterior, extraction.resize_filter) == ("a photo of a {category}", "sample", "bicubic")
    assert (small.model.name, small.extraction.image_size) == ("sd21", 512)
    assert (published.model.name, published.extraction.image_size) == ("sd21-768", 768)
    assert "768" in small.provenance.source and "512" in small.provenance.source


@pytest.mark.parametrize("name", ["meng-practical-sd15", "meng-legacy-sd15", "meng-practical-sdxl", "meng-legacy-sdxl"])
def test_the_gdf_presets_sample_the_vae_and_resize_bicubic_as_gdf_does(name):
    extraction = FeatureConfig.from_yaml(PRESETS[0].with_name(f"{name}.yaml")).extraction
    assert (extraction.vae_posterior, extraction.resize_filter) == ("sample", "bicubic")
