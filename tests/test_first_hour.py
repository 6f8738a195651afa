"""What a newcomer meets in the first hour: runs write to an ignored folder, files keyed by
their settings, configs that resolve from anywhere, presets by name, version and environment,
help texts and the cache commands' safety."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_runs_go_to_the_runs_folder_by_default():
    import typer.main

    from autosel.cli import app
    from autosel.run_config import RunConfig

    assert RunConfig().out == Path("runs")
    group = typer.main.get_command(app)
    for name in ("search", "sweep"):
        out = next(p for p in group.commands[name].params if p.name == "out")
        assert Path(out.default) == Path("runs"), name


def test_the_runs_folder_is_ignored_by_git():
    ignored = subprocess.run(["git", "check-ignore", "-q", "runs/tiny/correspondence/best.yaml"], cwd=ROOT)
    assert ignored.returncode == 0


def test_the_makefile_regenerates_the_committed_results_in_one_target():
    makefile = (ROOT / "Makefile").read_text()
    run = makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "results" not in run  # `make run` writes to runs/
    results = makefile.split("\nresults:", 1)[1].split("\n\n", 1)[0]
    assert "--out results" in results and "autosel report" in results


def test_sweeps_with_other_settings_keep_their_files_side_by_side(tmp_path):
    from autosel.screen import run_sweep
    from autosel.space import SearchSpace

    space = SearchSpace(model="tiny", image_size=64, timesteps=[50], proxy={"pairs": 4},
                        candidates={"include": ["mid-vit-out"], "exclude": []})
    first = run_sweep(space, out=tmp_path, batch_size=8, progress=False)
    other = run_sweep(space.replace(proxy={"pairs": 6}), out=tmp_path, batch_size=8, progress=False)
    assert first.csv != other.csv and first.heatmap != other.heatmap
    assert first.csv.is_file() and other.csv.is_file() and first.csv.name.startswith("sweep-64x64-float32-")


def a_config(name: str):
    from autosel.config import FeatureConfig

    return FeatureConfig.from_dict({"model": {"name": name}, "activations": [{"id": "mid-vit-out", "timestep": 50}]})


def test_a_written_config_stores_a_local_model_folder_absolute(tmp_path, monkeypatch):
    import yaml

    (tmp_path / "my-model").mkdir()
    monkeypatch.chdir(tmp_path)
    a_config("./my-model").to_yaml(tmp_path / "best.yaml")
    assert yaml.safe_load((tmp_path / "best.yaml").read_text())["model"]["name"] == str(tmp_path / "my-model")


def test_a_relative_model_folder_resolves_from_the_config_file_not_the_working_directory(tmp_path, monkeypatch):
    from autosel.config import FeatureConfig

    (tmp_path / "project" / "my-model").mkdir(parents=True)
    (tmp_path / "project" / "best.yaml").write_text(a_config("tiny").to_yaml().replace("name: tiny", "name: ./my-model"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert FeatureConfig.from_yaml(tmp_path / "project" / "best.yaml").model.name == str(tmp_path / "project" / "my-model")


def test_a_missing_model_folder_names_the_config_and_the_path_tried(tmp_path):
    from autosel.config import ConfigError, FeatureConfig

    (tmp_path / "best.yaml").write_text(a_config("tiny").to_yaml().replace("name: tiny", "name: ./gone"))
    with pytest.raises(ConfigError, match=rf"best.yaml: model.name './gone': no folder at {tmp_path / 'gone'}"):
        FeatureConfig.from_yaml(tmp_path / "best.yaml")


def test_registry_names_and_hub_ids_are_not_paths(tmp_path):
    from autosel.config import local_model_folder

    assert local_model_folder("tiny", tmp_path) is None and local_model_folder("owner/name", tmp_path) is None


def test_a_table_at_80_columns_never_splits_an_id(monkeypatch, capsys):
    from autosel import output

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr("rich.console.Console.is_terminal", property(lambda self: True))  # a real 80-column terminal
    ids = ["up-level1-repeat0-res-increment@50", "best single: up-level1-repeat0-vit-block0-cross-q @ t=50"]
    records = [{"config": ids[1], "activations": f"{ids[0]}, up-level0-upsampler-out@10", "channels": 128, "heldout": "52.0"}]
    output.print_records(records, output.OutputFormat.table,
                         [("config", "config"), ("activations", "activations"), ("channels", "C"), ("heldout", "held-out %")])
    printed = capsys.readouterr().out
    for word in ("up-level1-repeat0-res-increment@50", "up-level1-repeat0-vit-block0-cross-q", "up-level0-upsampler-out@10", "52.0"):
        assert word in printed


def test_version_prints_the_package_version(run_cli):
    import autosel

    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"autosel {autosel.__version__}"


def test_env_reports_the_library_and_cuda_versions(run_cli):
    import json

    done = run_cli("env", "--format", "json")
    assert done.returncode == 0, done.stderr
    names = {row["name"] for row in json.loads(done.stdout)}
    assert {"autosel", "torch", "diffusers", "optuna", "ray", "cuda (torch build)"} <= names


def test_shell_completion_is_offered(run_cli):
    assert "--install-completion" in run_cli("--help").stdout


def test_presets_lists_every_shipped_preset_with_its_source(run_cli):
    import json

    done = run_cli("presets", "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert "meng-practical-sdxl" in rows and "Meng et al." in rows["meng-practical-sdxl"]["source"]


def test_a_preset_is_usable_by_name_from_any_folder(tmp_path, monkeypatch):
    from autosel.config import FeatureConfig

    monkeypatch.chdir(tmp_path)
    assert FeatureConfig.from_yaml("meng-practical-sdxl").model.name == "sdxl"
    assert FeatureConfig.from_yaml("results/presets/meng-legacy-sd15.yaml").model.name == "sd15"  # the README's old spelling


def test_a_preset_name_works_with_the_config_option(run_cli, tmp_path):
    done = run_cli("export", "--config", "meng-practical-sdxl", "--to", "gdf", "--out", str(tmp_path / "gdf"))
    assert done.returncode == 0, done.stderr


def help_of(run_cli, *command: str) -> str:
    done = run_cli(*command, "--help", env={"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    return done.stdout


ALL_COMMANDS = [["models"], ["catalog"], ["inspect"], ["extract"], ["evaluate"], ["sweep"], ["search"], ["studies"],
                ["report"], ["dashboard"], ["cache", "info"], ["cache", "verify"], ["cache", "clear"], ["export"],
                ["import"], ["presets"], ["env"]]


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=" ".join)
def test_flags_show_no_bool_metavar(run_cli, command):
    assert "<bool>" not in help_of(run_cli, *command)


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=" ".join)
def test_examples_are_not_joined_with_a_semicolon(run_cli, command):
    assert " ; " not in help_of(run_cli, *command)


def test_t_means_the_task_wherever_it_is_an_option(run_cli):
    for command in ALL_COMMANDS:
        text = help_of(run_cli, *command)
        for line in text.splitlines():
            if " -t " in line or "--t " in line:
                assert "--task" in line, (command, line)


def test_cache_clear_asks_before_deleting(run_cli, tmp_path):
    (tmp_path / "cache").mkdir()
    done = run_cli("cache", "clear", "--cache-dir", str(tmp_path / "cache"))  # no terminal answers: nothing deleted
    assert done.returncode == 1 and "nothing deleted" in done.stderr


def test_cache_clear_with_yes_does_not_ask(run_cli, tmp_path):
    (tmp_path / "cache").mkdir()
    done = run_cli("cache", "clear", "--cache-dir", str(tmp_path / "cache"), "--yes")
    assert done.returncode == 0 and "deleted 0 entries" in done.stdout


def test_cache_verify_on_a_missing_folder_exits_non_zero(run_cli, tmp_path):
    done = run_cli("cache", "verify", "--cache-dir", str(tmp_path / "no-such-cache"))
    assert done.returncode != 0 and "no cache folder at" in done.stderr


def test_stage_messages_follow_stderr_when_a_progress_bar_redirects_it(monkeypatch):
    import io
    import logging
    import sys

    from autosel import log

    saved = logging.getLogger("autosel").handlers[:], logging.getLogger("autosel").level
    try:
        log.configure()
        redirected = io.StringIO()  # what rich's live display puts in sys.stderr: lines printed above the bar
        monkeypatch.setattr(sys, "stderr", redirected)
        log.event("screen: start")
        assert redirected.getvalue() == "screen: start\n"
    finally:
        logging.getLogger("autosel").handlers[:], _ = saved[0], logging.getLogger("autosel").setLevel(saved[1])


def test_the_dashboard_does_not_log_every_request(capfd):
    import threading
    import urllib.request

    import optuna

    from autosel.cli.studies import quiet_dashboard_server

    server = quiet_dashboard_server(optuna.storages.InMemoryStorage(), 0)  # port 0: any free one
    serving = threading.Thread(target=server.handle_request)
    serving.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/api/studies", timeout=60) as answer:
            assert answer.status == 200
    finally:
        serving.join(60)
        server.server_close()
    assert "GET /api/studies" not in capfd.readouterr().err


def test_rays_token_notice_is_not_printed_but_its_other_warnings_are():
    import logging

    from autosel.runtime.workers import quiet_ray_notices

    quiet_ray_notices()
    source = logging.getLogger("ray._private.authentication.authentication_token_setup")
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    source.addHandler(handler)
    try:
        source.warning("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out.")
        source.warning("Token authentication is disabled for this Ray cluster. Anyone with network access…")
    finally:
        source.removeHandler(handler)
    assert seen == ["Token authentication is disabled for this Ray cluster. Anyone with network access…"]


def test_importing_autosel_keeps_diffusers_and_transformers_to_errors():
    import sys

    code = "import autosel, os; print(os.environ['DIFFUSERS_VERBOSITY'], os.environ['TRANSFORMERS_VERBOSITY'])"
    env = {k: v for k, v in __import__("os").environ.items() if not k.endswith("_VERBOSITY")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.stdout.split() == ["error", "error"], done.stderr


def test_a_progress_bar_prints_no_blank_line_where_stdout_is_not_a_terminal(capsys, monkeypatch):
    from autosel.progress import progress_bar

    monkeypatch.delenv("AUTOSEL_PROGRESS", raising=False)
    with progress_bar("screen", 2) as advance:
        advance(2)
    assert capsys.readouterr().out == ""


def test_the_importance_caption_names_only_parameters_the_study_has():
    from autosel.report import importance_caption

    caption = importance_caption({"n": 0.5, "a0": 0.3, "a1": 0.2})
    assert "`n`" in caption and "`a`k" in caption
    assert "`t`" not in caption and "`w`" not in caption  # no timestep parameter exists; weights were not searched
    assert "`w`k" in importance_caption({"n": 0.5, "a0": 0.3, "w0": 0.2})


def confirmed_entry(name: str, activations: list[tuple[str, int]]) -> dict:
    config = {"model": {"name": "tiny"}, "extraction": {"image_size": 64},
              "activations": [{"id": i, "timestep": t} for i, t in activations]}
    return {"name": name, "heldout": 0.5, "search": None, "channels": 64, "trial": None, "config": config}


def test_the_report_picks_best_yaml_and_the_legacy_preset_for_the_matches():
    from autosel.report import matched_configs

    confirmed = [confirmed_entry("trial 3", [("mid-vit-out", 50)]), confirmed_entry("preset dift-like", [("mid-vit-out", 10)]),
                 confirmed_entry("preset legacy-tiny", [("up-level0-upsampler-out", 50)])]
    chosen = matched_configs(confirmed)
    assert [name for name, _ in chosen] == ["best.yaml (trial 3)", "preset legacy-tiny"]
    assert matched_configs([{k: v for k, v in c.items() if k != "config"} for c in confirmed]) == []  # an older study


def test_the_matches_picture_draws_held_out_pairs_side_by_side(tmp_path):
    import numpy as np
    from PIL import Image

    from autosel.report import matched_configs, matches_picture

    chosen = matched_configs([confirmed_entry("trial 3", [("up-level1-repeat0-res-increment", 50)]),
                              confirmed_entry("preset legacy-tiny", [("up-level0-upsampler-out", 50)])])
    path, alpha = matches_picture(chosen, "shapes", tmp_path / "matches.png", "tiny · correspondence", device="cpu")
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=float)
    assert alpha == 0.1 and pixels.shape[1] > pixels.shape[0] > 300  # rows: pairs; columns: the two configs
    red, green = (pixels[..., 0] > 180) & (pixels[..., 1] < 80), (pixels[..., 1] > 120) & (pixels[..., 0] < 80)
    assert red.sum() + green.sum() > 50  # the match lines are drawn


def test_a_mistyped_preset_name_suggests_the_closest_preset():
    from autosel.config import ConfigError, FeatureConfig

    with pytest.raises(ConfigError, match=r"meng-practical-sdx: no such feature config file, nor a shipped preset.*meng-practical-sdxl"):
        FeatureConfig.from_yaml("meng-practical-sdx")
