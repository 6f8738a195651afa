"""Bad feature configs and search spaces: one line naming the file and what is wrong, exit 2,
and nothing constructed from the YAML (safe loading only)."""

from __future__ import annotations

import pytest
from conftest import assert_one_error_line

TINY = "model: {name: tiny}\nextraction: {image_size: 64}\nactivations: [{id: mid-vit-out, timestep: 50}]\n"


@pytest.mark.parametrize("text, fragment", [
    ("!!python/object/apply:os.system ['touch PWNED']\n", "not valid YAML"),
    ("- just\n- a list\n", "config"),
    ("model: {name: tiny}\nactivations: [{id: mid-vit-out, timestep: 5000}]\n", "timestep"),
    ("model: {name: tiny}\nactivations: [{id: mid-vit-outt, timestep: 50}]\n", "mid-vit-out"),
    (TINY + "aggregaton: {l2_normalize: true}\n", "aggregaton"),
    ("model: {name: tiny\n", "not valid YAML (line"),
])
def test_a_bad_feature_config_is_one_line_naming_the_file(cli_main, tmp_path, text, fragment, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    outcome = cli_main("evaluate", "--config", config, "--max-pairs", "2", "--no-progress")
    assert_one_error_line(outcome, "bad.yaml", fragment)
    assert not (tmp_path / "PWNED").exists()


def test_a_missing_config_file_is_named(cli_main, tmp_path):
    assert_one_error_line(cli_main("extract", "--config", tmp_path / "nope.yaml", "--images", tmp_path, "--out", tmp_path / "f.st"),
                          "nope.yaml: no such feature config file")


def test_a_space_file_with_a_python_tag_is_refused(cli_main, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("model: tiny\nsearch: !!python/object/apply:os.system ['touch PWNED']\n")
    assert_one_error_line(cli_main("sweep", "--space", space, "--out", tmp_path), "space.yaml")
    assert not (tmp_path / "PWNED").exists()
