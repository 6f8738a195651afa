"""Bad names and values on the command line: refused in the first second, before the model
loads or the store is touched, with the close match where there is one."""

from __future__ import annotations

import socket

import pytest
import torch
from conftest import PRESET, assert_one_error_line

NO_CUDA = not torch.cuda.is_available()


def test_an_unknown_strategy_is_refused_before_any_screening_or_store(cli_main, space_file, tmp_path):
    outcome = cli_main("search", "--space", space_file, "--strategy", "greedy-tp", "--out", tmp_path / "out")
    assert_one_error_line(outcome, "unknown strategy 'greedy-tp'", "greedy-tpe")
    assert not (tmp_path / "out" / "autosel.db").exists()


def test_an_unknown_task_names_the_close_match(cli_main, space_file, tmp_path):
    outcome = cli_main("search", "--space", space_file, "--task", "segmentaton", "--out", tmp_path / "out")
    assert_one_error_line(outcome, "unknown task 'segmentaton'", "segmentation")


@pytest.mark.parametrize("dataset, fragment", [
    ("spar:/data/SPair-71k", "unknown dataset"),
    ("spair:/nonexistent/SPair-71k", "/nonexistent/SPair-71k does not exist"),
    ("folder:", "needs a path"),
])
def test_a_bad_dataset_spec_is_refused_before_the_model_loads(cli_main, space_file, tmp_path, dataset, fragment):
    assert_one_error_line(cli_main("sweep", "--space", space_file, "--dataset", dataset, "--out", tmp_path), fragment)


@pytest.mark.parametrize("command", ["search", "sweep"])
def test_an_unknown_device_string_is_refused(cli_main, space_file, tmp_path, command):
    outcome = cli_main(command, "--space", space_file, "--device", "tpu9", "--out", tmp_path)
    assert_one_error_line(outcome, "--device 'tpu9' is not a device")


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA: the case is a CPU-only torch")
@pytest.mark.parametrize("command", ["search", "sweep", "inspect"])
def test_cuda_on_a_machine_without_it_is_refused(cli_main, space_file, tmp_path, command):
    args = ["--model", "tiny"] if command == "inspect" else ["--space", space_file, "--out", tmp_path]
    assert_one_error_line(cli_main(command, *args, "--device", "cuda"), "--device 'cuda'", "use --device cpu")


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA: the case is a CPU-only torch")
def test_extract_refuses_cuda_before_loading_anything(cli_main, tmp_path):
    outcome = cli_main("extract", "--config", PRESET, "--images", tmp_path,
                       "--out", tmp_path / "f.safetensors", "--device", "cuda:1")
    assert_one_error_line(outcome, "--device 'cuda:1'")


def test_a_model_without_cached_weights_fails_before_the_study_is_created(cli_main, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    outcome = cli_main("search", "--model", "sd15", "--dataset", "shapes", "--out", tmp_path / "out",
                       "--cache-dir", tmp_path / "cache")
    assert_one_error_line(outcome, "hf download stable-diffusion-v1-5/stable-diffusion-v1-5")
    assert not (tmp_path / "out" / "autosel.db").exists()


def test_dashboard_on_a_port_in_use_says_so(cli_main, tmp_path):
    from autosel.optimise.study import open_storage

    url = f"sqlite:///{tmp_path / 'autosel.db'}"
    open_storage(url)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        outcome = cli_main("dashboard", "--storage", url, "--port", port)
    assert_one_error_line(outcome, f"port {port} on 127.0.0.1 is already in use", "--port")


def test_a_split_pinned_for_both_roles_is_refused(cli_main, space_file, spair_root, tmp_path):
    outcome = cli_main("search", "--space", space_file, "--dataset", f"spair:{spair_root}:test", "--out", tmp_path / "out")
    assert_one_error_line(outcome, "pins split 'test' for both the search and the held-out role", "--allow-same-split")
    assert not (tmp_path / "out" / "autosel.db").exists()


@pytest.mark.slow
def test_allowing_the_same_split_labels_every_confirmation_not_held_out(spair_root, tmp_path):
    from fixture_data import small_search_space

    import autosel
    from autosel.config import FeatureConfig
    from autosel.pipeline import NOT_HELD_OUT
    from autosel.space import SearchSpace

    space = small_search_space(trials=2)
    space = SearchSpace.from_dict({**space, "dataset": f"spair:{spair_root}:test", "proxy": {}, "image_size": 64,
                                   "allow_same_split": True})
    outcome = autosel.search(space, autosel.RunConfig(out=tmp_path / "out", cache_dir=tmp_path / "cache", progress=False),
                             autosel.Resources(workers=0))
    assert outcome.heldout_label == NOT_HELD_OUT
    assert FeatureConfig.from_yaml(outcome.folder / "best.yaml").score.split == NOT_HELD_OUT
