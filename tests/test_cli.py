"""The command line as a user runs it: subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json


def test_help_lists_the_commands(run_cli):
    result = run_cli("--help")
    assert result.returncode == 0
    assert "models" in result.stdout and "catalog" in result.stdout


def test_models_lists_registry_names_with_hub_ids(run_cli):
    result = run_cli("models", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["sdxl"]["hub_id"] == "stabilityai/stable-diffusion-xl-base-1.0"
    assert rows["sd15"]["resolution"] == 512 and rows["sd15"]["family"] == "sd"
    assert {"hub_id", "family", "resolution"} <= set(rows["sdxl-turbo"])


def test_models_table_is_readable(run_cli):
    result = run_cli("models")
    assert result.returncode == 0
    assert "stabilityai/sdxl-turbo" in result.stdout


def test_catalog_json_of_sdxl_works_offline(run_cli):
    result = run_cli("catalog", "--model", "sdxl", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) >= 612
    assert {"id", "kind", "stage", "channels", "height", "width", "depth"} <= set(rows[0])


def test_catalog_table_of_the_default_model(run_cli):
    result = run_cli("catalog")
    assert result.returncode == 0, result.stderr
    assert "up-level1-repeat0-vit-block0-cross-q" in result.stdout


def test_catalog_filter_and_non_square_size(run_cli):
    result = run_cli("catalog", "--model", "sd15", "--image-size", "512x768", "--filter", "up-level3-*-self-k", "--format", "yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("- id: up-level3-repeat") == 3
    assert "width: 96" in result.stdout


def test_unknown_model_exits_2_with_the_closest_name(run_cli):
    result = run_cli("catalog", "--model", "sdxll")
    assert result.returncode == 2
    assert "Did you mean 'sdxl'" in result.stderr
    assert "sd15" in result.stderr and "Traceback" not in result.stderr


def test_folder_that_is_not_a_pipeline_exits_2_saying_what_was_expected(run_cli, tmp_path):
    result = run_cli("catalog", "--model", str(tmp_path))
    assert result.returncode == 2
    assert "model_index.json" in result.stderr and "Traceback" not in result.stderr


def test_unavailable_hub_model_exits_2_naming_the_repo_and_the_ways_out(run_cli):
    result = run_cli("catalog", "--model", "someone/not-downloaded")
    assert result.returncode == 2
    assert "someone/not-downloaded" in result.stderr
    assert "hf download" in result.stderr and "local diffusers pipeline folder" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unknown_format_is_a_usage_error(run_cli):
    result = run_cli("catalog", "--format", "xml")
    assert result.returncode == 2
    assert "xml" in result.stderr


def test_bad_image_size_is_a_one_line_error(run_cli):
    result = run_cli("catalog", "--model", "sd15", "--image-size", "500")
    assert result.returncode == 2
    assert "multiple of 8" in result.stderr and "Traceback" not in result.stderr


COMMANDS = [["models"], ["catalog"], ["extract"], ["export"], ["import"], ["evaluate"], ["sweep"], ["search"],
            ["studies"], ["report"], ["dashboard"], ["cache", "info"], ["cache", "clear"], ["presets"], ["env"]]


def test_every_command_has_help_with_an_example():
    from typer.testing import CliRunner

    from autosel.cli import app

    runner = CliRunner()
    top = runner.invoke(app, ["--help"])
    for command in COMMANDS:
        assert command[0] in top.output
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, command
        assert "Example" in result.output, command
