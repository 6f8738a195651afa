"""σ as the noise level: `sigma:` in a config instead of `timestep:`, and t and σ recorded beside it."""

from __future__ import annotations

import json

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
