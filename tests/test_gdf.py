"""Interop with generic-diffusion-feature: export, import, and the round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autosel.config import FeatureConfig
from autosel.gdf import GdfError, export_gdf, import_gdf

PRESETS = sorted((Path(__file__).parents[1] / "results" / "presets").glob("*.yaml"))
GDF_PRESETS = [p for p in PRESETS if all(a.timestep is not None for a in FeatureConfig.from_yaml(p).activations)]
"""Presets gdf can take: integer timesteps only (a sigma is refused, see tests/test_sigma.py)."""


@pytest.mark.parametrize("preset", GDF_PRESETS, ids=[p.stem for p in GDF_PRESETS])
def test_round_trip_keeps_everything_gdf_can_express(preset, tmp_path):
    original = FeatureConfig.from_yaml(preset)
    export_gdf(original, tmp_path)
    back = import_gdf(tmp_path / "layers.json")
    assert back.model.name == original.model.name
    assert back.ids == original.ids
    assert back.timesteps == original.timesteps
    assert back.extraction.prompt == original.extraction.prompt
    assert back.extraction.image_size == original.extraction.image_size


def test_export_writes_the_layer_dict_and_args(tmp_path):
    result = export_gdf(FeatureConfig.from_yaml(PRESETS[0].with_name("meng-practical-sdxl.yaml")), tmp_path)
    layers = json.loads((tmp_path / "layers.json").read_text())
    args = json.loads((tmp_path / "args.json").read_text())
    assert layers == {
        "up-level0-repeat0-vit-block7-out": True,
        "up-level0-repeat0-vit-block5-out": True,
        "up-level1-repeat0-vit-block0-cross-q": True,
        "up-level1-repeat0-vit-block0-out": True,
    }
    assert (args["version"], args["img_size"], args["t"]) == ("xl", 1024, 50)
    assert (tmp_path / "README.md") in result.files


def test_what_gdf_cannot_express_is_reported(tmp_path):
    config = FeatureConfig.from_dict(
        {
            "model": {"name": "sd15"},
            "extraction": {"ensemble": 4},
            "activations": [
                {"id": "up-level1-repeat1-res-out", "timestep": 50, "weight": 2.0},
                {"id": "up-level2-repeat1-res-out", "timestep": 200, "post": "l2"},
            ],
        }
    )
    result = export_gdf(config, tmp_path)
    notes = " | ".join(result.notes)
    assert "weight 2.0" in notes and "post-processing 'l2'" in notes and "ensemble 4" in notes
    assert "one timestep per call" in notes
    assert json.loads((tmp_path / "layers-t50.json").read_text()) == {"up-level1-repeat1-res-out": True}
    assert json.loads((tmp_path / "layers-t200.json").read_text()) == {"up-level2-repeat1-res-out": True}
    assert "weight 2.0" in (tmp_path / "README.md").read_text()


def test_import_skips_ids_set_to_false(tmp_path):
    path = tmp_path / "layers.json"
    path.write_text(json.dumps({"up-level1-repeat0-res-out": True, "up-level2-repeat0-res-out": False}))
    assert import_gdf(path, model="sd15", timestep=10).ids == ["up-level1-repeat0-res-out"]


def test_import_of_a_non_selection_json_says_what_is_expected(tmp_path):
    path = tmp_path / "layers.json"
    path.write_text(json.dumps(["up-level1-repeat0-res-out"]))
    with pytest.raises(GdfError, match="expected a JSON object of activation ids"):
        import_gdf(path, model="sd15")


def test_a_pixart_config_exports_with_gdf_version_and_flags_the_autosel_extra(tmp_path):
    config = FeatureConfig.from_dict({
        "model": {"name": "pixart-sigma"},
        "activations": [{"id": "vit-block13-out", "timestep": 50}, {"id": "vit-block13-norm-in", "timestep": 50}],
    })
    result = export_gdf(config, tmp_path)
    assert json.loads((tmp_path / "args.json").read_text())["version"] == "pixart-sigma"
    assert any("vit-block13-norm-in" in note and "extra" in note for note in result.notes)


def test_the_sdxl_practical_export_carries_every_key_gdf_s_correspondence_task_reads(tmp_path):
    """Keys and types from gdf's correspondence/correspondence/aggregation_network.py (lines 20,
    35, 37–41: c['feature_len'], config['t'], ['layer'], ['version'], ['attention'], ['img_size']);
    feature_len equals gdf's own correspondence/correspondence/config_sdxl.json (3840)."""
    from autosel.gdf import GDF_CORRESPONDENCE_KEYS

    export_gdf(FeatureConfig.from_yaml(PRESETS[0].with_name("meng-practical-sdxl.yaml")), tmp_path)
    task = json.loads((tmp_path / "correspondence.json").read_text())
    assert set(task) == set(GDF_CORRESPONDENCE_KEYS) == {"feature_len", "layer", "version", "attention", "img_size", "t"}
    assert all(isinstance(task[key], kind) for key, kind in GDF_CORRESPONDENCE_KEYS.items())
    assert task == {"feature_len": 3840, "layer": "layers.json", "version": "xl", "attention": None, "img_size": 1024, "t": 50}
    assert (tmp_path / task["layer"]).is_file()


def test_the_readme_call_matches_gdf_s_feature_extractor_signatures(tmp_path):
    """gdf's feature/diffusion_feature.py: FeatureExtractor(layer, version, device, dtype, img_size, …,
    attention, …); encode_prompt(prompt_str); extract(prompts, batch_size, image, …, t)."""
    export_gdf(FeatureConfig.from_yaml(PRESETS[0].with_name("meng-practical-sdxl.yaml")), tmp_path)
    readme = (tmp_path / "README.md").read_text()
    assert "FeatureExtractor(layer='layers.json', version='xl', device='cuda'," in readme
    assert "dtype='float32', img_size=1024, attention=None)" in readme
    assert "prompt = extractor.encode_prompt(''" in readme
    assert "extractor.extract(prompt, batch_size=1, image=[Image.open(" in readme and "t=50)" in readme


def test_l2_normalisation_and_head_averaged_maps_are_reported(tmp_path):
    config = FeatureConfig.from_dict({"model": {"name": "sd15"},
                                      "activations": [{"id": "up-level1-repeat0-vit-block0-self-map", "timestep": 50}]})
    notes = " | ".join(export_gdf(config, tmp_path).notes)
    assert "L2 normalisation" in notes and "head-averaged" in notes
    assert "L2 normalisation" in (tmp_path / "README.md").read_text()


SD_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


@pytest.fixture(scope="module")
def scheduled_folders(tmp_path_factory):
    """tiny-random saved twice as a local folder: with SD 1.5's PNDM scheduler and with a DDIM one."""
    from diffusers import DDIMScheduler, PNDMScheduler

    from autosel.models import load_pipeline

    pipeline = load_pipeline("tiny-random")
    folders = {}
    for name, scheduler in {
        "pndm": PNDMScheduler(**SD_BETAS, skip_prk_steps=True, steps_offset=1),
        "ddim": DDIMScheduler(**SD_BETAS, steps_offset=1, clip_sample=False, set_alpha_to_one=False),
    }.items():
        pipeline.scheduler = scheduler
        folders[name] = tmp_path_factory.mktemp(name)
        pipeline.save_pretrained(folders[name])
    return folders


def folder_config(folder, timestep=50, **extraction) -> FeatureConfig:
    return FeatureConfig.from_dict({"model": {"name": str(folder)}, "extraction": {"image_size": 64, **extraction},
                                    "activations": [{"id": "up-level1-upsampler-out", "timestep": timestep}]})


def img2img_runs_at(folder, t):
    """The timestep diffusers' img2img pipeline (what gdf loads and calls) takes for gdf's t."""
    from diffusers import StableDiffusionImg2ImgPipeline

    pipeline = StableDiffusionImg2ImgPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    pipeline.scheduler.set_timesteps(1000)
    return int(pipeline.get_timesteps(1000, t / 1000, "cpu")[0][0])


def test_a_pndm_folder_exports_the_t_that_makes_gdf_run_at_the_timestep(scheduled_folders, tmp_path):
    export_gdf(folder_config(scheduled_folders["pndm"]), tmp_path)
    args = json.loads((tmp_path / "args.json").read_text())
    task = json.loads((tmp_path / "correspondence.json").read_text())
    assert (args["t"], args["timestep"], task["t"]) == (49, 50, 49)
    assert img2img_runs_at(scheduled_folders["pndm"], 49) == 50
    assert img2img_runs_at(scheduled_folders["pndm"], 50) == 51  # why 50 would be wrong


def test_a_ddim_folder_exports_the_timestep_as_is(scheduled_folders, tmp_path):
    export_gdf(folder_config(scheduled_folders["ddim"], timestep=261), tmp_path)
    assert json.loads((tmp_path / "args.json").read_text())["t"] == 261
    assert img2img_runs_at(scheduled_folders["ddim"], 261) == 261


def test_a_grid_without_the_step_offset_exports_t_plus_one():
    from autosel.gdf_timestep import gdf_runs_at, gdf_timestep

    ddpm = {"_class_name": "DDPMScheduler", **SD_BETAS}
    assert (gdf_timestep(50, ddpm, "if"), gdf_runs_at(51, ddpm, "if")) == (51, 50)


def test_the_sd15_export_uses_pndm_s_grid_without_the_model_files(tmp_path):
    export_gdf(FeatureConfig.from_yaml(PRESETS[0].with_name("meng-practical-sd15.yaml")), tmp_path)
    assert json.loads((tmp_path / "correspondence.json").read_text())["t"] == 49


def test_a_local_folder_export_gives_gdf_s_command_line_that_loads_it(scheduled_folders, tmp_path):
    folder = scheduled_folders["pndm"]
    export_gdf(folder_config(folder), tmp_path)
    readme = (tmp_path / "README.md").read_text()
    assert f"--offline_lora {folder}" in readme and f"offline_lora='{folder}'" in readme
    assert "--version 1-5" in readme and "--t 49" in readme and "--prompt_file prompt.txt" in readme
    assert "version='None'" not in readme
    assert (tmp_path / "prompt.txt").read_text() == ""


def test_a_model_gdf_cannot_load_gets_no_call_with_version_none(tmp_path):
    config = FeatureConfig.from_dict({"model": {"name": "sd3-medium"}, "activations": [{"id": "vit-block3-out", "timestep": 260}]})
    readme = (tmp_path / "README.md")
    export_gdf(config, tmp_path)
    assert "version='None'" not in readme.read_text() and "no loader" in readme.read_text()


def test_the_readme_lists_every_difference_that_remains(scheduled_folders, tmp_path):
    export_gdf(folder_config(scheduled_folders["pndm"]), tmp_path)
    readme = (tmp_path / "README.md").read_text()
    for difference in ("float16", "VAE posterior", "bicubic", "noise seed", "L2 normalisation", "t=49 for timestep 50"):
        assert difference in readme, difference


def test_bicubic_resize_is_not_listed_when_the_config_resizes_as_gdf(scheduled_folders, tmp_path):
    notes = export_gdf(folder_config(scheduled_folders["pndm"], resize_filter="bicubic"), tmp_path).notes
    assert not any(note.startswith("resize:") for note in notes)


def test_import_of_gdf_s_own_t_gives_the_timestep_it_runs_at(scheduled_folders, tmp_path):
    (tmp_path / "layers.json").write_text(json.dumps({"up-level1-upsampler-out": True}))
    (tmp_path / "args.json").write_text(json.dumps({"version": "1-5", "t": 49, "model": str(scheduled_folders["pndm"])}))
    assert import_gdf(tmp_path / "layers.json").timesteps == [50]
