"""σ as the noise level: `sigma:` in a config instead of `timestep:`, and t and σ recorded beside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open

from autosel.config import ConfigError, FeatureConfig
from autosel.extract import FeatureExtractor
from autosel.gdf import GdfError, export_gdf
from autosel.noise import FlowNoise
from autosel.schema import Sigma, parse_level
from autosel.writer import extract_to_file

FLUX_DEV_SCHEDULER = {  # autosel/models/configs/flux-dev.json's, as FLUX.1-dev ships it
    "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15,
    "base_image_seq_len": 256, "max_image_seq_len": 4096,
}


def config(activation, model="tiny-random", image_size=64):
    return FeatureConfig.from_dict(
        {"model": {"name": model}, "extraction": {"image_size": image_size}, "activations": [activation]}
    )


def images(count=1, seed=0):
    return torch.rand(count, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("activation", "message"),
    [
        ({"id": "unet-in", "timestep": 260, "sigma": 0.26}, "gives both timestep and sigma"),
        ({"id": "unet-in"}, "gives no noise level: add timestep (0…999) or sigma (0–1)"),
        ({"id": "unet-in", "sigma": 1.5}, "sigma 1.5 is outside 0…1"),
    ],
)
def test_a_config_gives_exactly_one_noise_level_in_range(activation, message):
    with pytest.raises(ConfigError) as error:
        FeatureConfig.from_dict({"model": {"name": "tiny"}, "activations": [activation]}, source="c.yaml")
    text = str(error.value)
    assert text.startswith("c.yaml: activations[0]") and message in text and "\n" not in text


def test_flux_dev_timestep_260_at_640_px_is_sigma_042_and_sigma_026_is_t_145():
    noise = FlowNoise(FLUX_DEV_SCHEDULER, timestep_scale=1.0)
    tokens = (640 // 16) ** 2  # 8× VAE, 2×2 packing
    t, sigma = noise.level(260, tokens)
    assert (t, round(sigma, 2)) == (260.0, 0.42)
    t, sigma = noise.level(Sigma(0.26), tokens)
    assert sigma == 0.26 and round(t) == 145
    assert noise.sigma(round(t * 100) / 100, tokens) == pytest.approx(0.26, abs=1e-5)  # the inverse of the shift


def test_sigma_reaches_the_flux_denoiser_unshifted():
    extractor = FeatureExtractor(config({"id": "vit-block0-out", "sigma": 0.26}, model="tiny-flux-random"), device="cpu")
    seen = {}
    handle = extractor.unet.register_forward_pre_hook(
        lambda module, args, kwargs: seen.update(timestep=kwargs["timestep"]), with_kwargs=True
    )
    try:
        extractor(images())
    finally:
        handle.remove()
    assert seen["timestep"].tolist() == [pytest.approx(0.26)]


def test_sigma_on_a_ddpm_model_is_the_timestep_of_nearest_noise_level():
    by_t = FeatureExtractor(config({"id": "up-level1-repeat0-res-out", "timestep": 100}), device="cpu")
    t, sigma = by_t.noise_level(100)
    by_sigma = FeatureExtractor(config({"id": "up-level1-repeat0-res-out", "sigma": sigma + 1e-6}), device="cpu")
    assert by_sigma.noise_level(Sigma(sigma + 1e-6)) == (t, sigma)
    first, second = by_t(images()), by_sigma(images())
    assert torch.equal(first["up-level1-repeat0-res-out"], second["up-level1-repeat0-res-out"])


def test_an_extracted_file_records_t_and_sigma_of_every_activation(tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 40, 40)).save(tmp_path / "a.png")
    extractor = FeatureExtractor(config({"id": "vit-block0-out", "sigma": 0.26}, model="tiny-flux-random"), device="cpu")
    extract_to_file(extractor, [tmp_path / "a.png"], tmp_path / "f.safetensors", progress=False)
    with safe_open(tmp_path / "f.safetensors", "pt") as handle:
        metadata = handle.metadata()
    levels = json.loads(metadata["autosel.noise_levels"])
    assert list(levels) == ["vit-block0-out@σ0.26"] and levels["vit-block0-out@σ0.26"]["sigma"] == 0.26
    written = FeatureConfig.from_dict(yaml.safe_load(metadata["autosel.config"]))
    record = written.activations[0].noise_level
    assert record.sigma == 0.26 and 0 < record.t < 260  # tiny-flux-random shifts t up: σ 0.26 is an earlier t


def test_a_written_config_with_its_record_reads_back_to_the_same_config():
    extractor = FeatureExtractor(config({"id": "unet-in", "timestep": 260}), device="cpu")
    recorded = extractor.recorded(extractor.config)
    again = FeatureConfig.from_dict(yaml.safe_load(recorded.to_yaml()))
    assert again == recorded and again.activations[0].level == 260 and again.activations[0].noise_level.sigma > 0


def test_the_gdf_export_refuses_sigma_in_one_line(tmp_path):
    with pytest.raises(GdfError, match=r"activations\[0\] \(unet-in\) gives sigma 0.26: gdf takes integer timesteps"):
        export_gdf(config({"id": "unet-in", "sigma": 0.26}, model="sd15", image_size=512), tmp_path)


def test_sigma_keys_apart_from_a_timestep_of_the_same_value():
    assert Sigma(0.0) != 0 and len({Sigma(0.0), 0}) == 2
    assert parse_level("σ0.26") == Sigma(0.26) and parse_level("260") == 260


def test_a_search_records_t_and_sigma_in_its_configs_and_tables(finished_search):
    import pandas as pd
    from diffusers import DDPMScheduler

    from autosel.models.tiny import SCHEDULER_CONFIG

    alphas = DDPMScheduler.from_config(SCHEDULER_CONFIG).alphas_cumprod.double()
    expected = {t: round(float((1 - alphas[t]).sqrt()), 4) for t in (50, 300)}  # the tiny model's √(1 − ᾱ_t)
    folder = Path(finished_search.removeprefix("sqlite:///")).parent / "tiny" / "correspondence"
    for path in [folder / "best.yaml", *sorted((folder / "pareto").glob("*.yaml"))]:
        for activation in FeatureConfig.from_yaml(path).activations:
            assert activation.noise_level.t == activation.timestep, path
            assert activation.noise_level.sigma == expected[activation.timestep], path
    (sweep_csv,) = folder.glob("sweep-*.csv")
    sweep = pd.read_csv(sweep_csv)
    assert list(sweep.columns).index("sigma") == list(sweep.columns).index("timestep") + 1
    assert {int(t): s for t, s in zip(sweep["timestep"], sweep["sigma"])} == expected
    confirmed = pd.read_csv(folder / "confirmed.csv")
    assert confirmed["sigmas"].astype(str).str.len().min() > 0
    trials = pd.read_csv(folder / "trials.csv")
    complete = trials[trials["state"] == "COMPLETE"]
    assert len(complete) and all(
        {float(part) for part in str(text).split(" + ")} <= {round(value, 3) for value in expected.values()}
        for text in complete["sigmas"]
    )


def test_a_search_space_gives_timesteps_or_sigmas_not_both():
    from autosel.space import SearchSpace

    with pytest.raises(ConfigError, match="timesteps and sigmas are both given: give one grid") as error:
        SearchSpace.from_dict({"model": "tiny", "timesteps": [50], "sigmas": [0.3]}, source="s.yaml")
    assert str(error.value).startswith("s.yaml: ") and "\n" not in str(error.value)
    with pytest.raises(ConfigError, match=r"s.yaml: sigmas: sigma 2.0 is outside 0…1"):
        SearchSpace.from_dict({"model": "tiny", "sigmas": [2.0]}, source="s.yaml")
    space = SearchSpace.from_dict({"model": "tiny", "sigmas": [0.5, 0.2]})
    assert space.sigmas == [0.2, 0.5] and space.replace(seed=3).sigmas == [0.2, 0.5]
    assert space.replace(timesteps=[10]).timesteps == [10] and space.replace(timesteps=[10]).sigmas is None


@pytest.mark.parametrize("model", ["tiny-random", "tiny-flux-random"])
def test_a_sigma_picks_the_timestep_of_nearest_noise_level(model):
    extractor = FeatureExtractor(config({"id": "unet-in" if model == "tiny-random" else "vit-block0-out", "timestep": 1},
                                        model=model), device="cpu")
    for t in (0, 37, 260, 999):
        assert extractor.timestep_for_sigma(extractor.noise_level(t)[1]) == t
    sigmas = [extractor.noise_level(t)[1] for t in range(1000)]
    target = (sigmas[100] + sigmas[101]) / 2 + 1e-9  # just nearer to t=101
    assert extractor.timestep_for_sigma(target) == 101


def test_a_sweep_over_sigmas_screens_at_their_nearest_timesteps(tmp_path):
    from autosel.screen import run_sweep
    from autosel.space import SearchSpace

    ddpm = FeatureExtractor(config({"id": "unet-in", "timestep": 50}, model="tiny"), device="cpu")
    space = SearchSpace.from_dict({
        "model": "tiny", "image_size": 64, "sigmas": [ddpm.noise_level(50)[1], ddpm.noise_level(300)[1]],
        "candidates": {"include": ["up-level1-repeat0-res-out"]}, "proxy": {"pairs": 4},
    })
    result = run_sweep(space, out=tmp_path, progress=False, write_files=False)
    assert sorted(set(result.rows["timestep"])) == [50, 300]
    assert sorted(set(result.rows["sigma"])) == [round(ddpm.noise_level(t)[1], 4) for t in (50, 300)]


def test_inspect_rows_record_the_sigma_of_their_timestep():
    from autosel.inspection import inspect_model
    from autosel.models.tiny import FLUX_SCHEDULER_CONFIG

    (row,) = inspect_model("tiny-flux-random", timesteps=[260], ids=["vit-block0-out"], images=1, image_size=64,
                           progress=False)
    tokens = (64 // 4 // 2) ** 2  # the twin's 4× VAE, then FLUX's 2×2 packing
    expected = FlowNoise(FLUX_SCHEDULER_CONFIG, timestep_scale=1.0).sigma(260, tokens)
    assert row.sigma == round(expected, 4) and row.to_dict()["sigma"] == row.sigma and row.sigma > 0.26


def test_a_sigma_on_the_generic_path_runs_at_the_pipelines_nearest_timestep():
    by_sigma = FeatureExtractor(config({"id": "vit-block0-out", "sigma": 0.5}, model="tiny-qwen-image-random"), device="cpu")
    t, sigma = by_sigma.noise_level(Sigma(0.5))
    below, above = by_sigma.noise_level(int(t) - 1)[1], by_sigma.noise_level(int(t) + 1)[1]
    assert abs(sigma - 0.5) <= min(abs(below - 0.5), abs(above - 0.5))  # no schedule point is nearer
    by_t = FeatureExtractor(config({"id": "vit-block0-out", "timestep": int(t)}, model="tiny-qwen-image-random"), device="cpu")
    assert torch.equal(by_sigma(images())["vit-block0-out"], by_t(images())["vit-block0-out"])


def test_a_study_reuses_its_recorded_noise_levels_only_at_the_same_image_size(tmp_path):
    from autosel.pipeline import Search
    from autosel.run_config import Resources, RunConfig
    from autosel.space import SearchSpace

    asked = []

    class RecordingPool:  # stands in for the workers: what the search asks of them
        def noise_levels(self, levels):
            asked.append(list(levels))
            return {t: (float(t), t / 1000) for t in levels}

        def close(self):
            pass

    def levels_of(space):
        search = Search(space, RunConfig(out=tmp_path, progress=False), Resources(workers=0))
        search._pool = RecordingPool()
        return search.noise_levels

    space = SearchSpace(model="tiny", image_size=64, timesteps=[50])
    assert levels_of(space) == {50: (50.0, 0.05)}
    assert levels_of(space) == {50: (50.0, 0.05)} and len(asked) == 1  # the same size: read back from the study
    levels_of(space.replace(image_size=32))
    assert len(asked) == 2  # another size: asked again (a flow shift can follow the size)
