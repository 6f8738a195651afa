"""Reliability 3: what a hostile or careless user finds. Huge sizes, non-finite numbers, huge
text, path-like study names, rotated phone pictures, formats besides PNG/JPEG, out-of-range
tensors, a stale Ray cluster file, a second driver on one SQLite file, a full disk under --out,
SIGTERM and Ctrl-C, and the Python API given a name instead of an object. Each refusal is one
line and exit code 2, leaves nothing partial behind and destroys no earlier result."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
import tempfile
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml
from conftest import SEARCH_TRIALS, assert_one_error_line, search_command
from PIL import Image

TINY_CONFIG = {"model": {"name": "tiny"}, "extraction": {"image_size": 64}, "activations": [{"id": "mid-vit-out", "timestep": 50}]}


def config_file(folder: Path, **extraction: object) -> Path:
    """The tiny model's one-activation config, with ``extraction`` fields replaced."""
    data = {**TINY_CONFIG, "extraction": {**TINY_CONFIG["extraction"], **extraction}}
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def image_folder(folder: Path, count: int = 2) -> Path:
    images = folder / "images"
    images.mkdir()
    for n in range(count):
        Image.fromarray(np.full((32, 32, 3), 60 * n, np.uint8)).save(images / f"img{n}.png")
    return images


def full_disk_on_flush(monkeypatch) -> None:
    """Every flush of a file autosel writes fails as on a full disk (as ``posix_fallocate`` does
    for the cache in ``test_cache_faults``)."""

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)


# 1. huge sizes: a memory estimate and a refusal before anything is allocated

def test_a_huge_image_size_in_a_feature_config_is_refused_before_allocating(cli_main, tmp_path):
    outcome = cli_main("extract", "--config", config_file(tmp_path, image_size=1_000_000_000), "--images",
                       image_folder(tmp_path), "--out", tmp_path / "f.safetensors")
    assert_one_error_line(outcome, "image_size 1000000000 needs at least", "this device")
    assert not (tmp_path / "f.safetensors").exists()


def test_a_huge_image_size_on_the_command_line_is_refused_by_the_dry_run_plan(cli_main, tmp_path):
    outcome = cli_main("sweep", "--model", "tiny", "--image-size", "100000", "--dry-run", "--out", tmp_path / "out")
    assert_one_error_line(outcome, "image_size 100000 needs at least", "GiB")
    assert not (tmp_path / "out").exists()


def test_a_huge_image_size_in_a_space_is_refused_by_the_search_dry_run(cli_main, tmp_path, space_file):
    space = yaml.safe_load(space_file.read_text())
    space_file.write_text(yaml.safe_dump({**space, "image_size": 1_000_000_000}))
    outcome = cli_main("search", "--space", space_file, "--dry-run", "--out", tmp_path / "out")
    assert_one_error_line(outcome, "image_size 1000000000 needs at least")


# 2. every number finite

def test_an_infinite_weight_is_refused_naming_the_field(cli_main, tmp_path):
    config = tmp_path / "inf.yaml"
    config.write_text("model: {name: tiny}\nactivations: [{id: mid-vit-out, timestep: 50, weight: .inf}]\n")
    outcome = cli_main("extract", "--config", config, "--images", image_folder(tmp_path), "--out", tmp_path / "f.safetensors")
    assert_one_error_line(outcome, "activations[0].weight", "finite")
    assert not (tmp_path / "f.safetensors").exists()


def test_an_infinite_number_on_the_command_line_is_refused(cli_main):
    outcome = cli_main("inspect", "--model", "tiny", "--factor", "inf")
    assert outcome.code == 2 and "--factor" in outcome.stderr and "Traceback" not in outcome.stderr


def test_a_nan_score_in_a_feature_config_is_refused_naming_the_field():
    from autosel.config import ConfigError, FeatureConfig

    data = {**TINY_CONFIG, "score": {"task": "correspondence", "dataset": "shapes", "split": "heldout", "metric": "pck", "value": float("nan")}}
    with pytest.raises(ConfigError, match=r"score\.value.*finite"):
        FeatureConfig.from_dict(data)


# 3. EXIF orientation

def phone_jpeg(path: Path, orientation: int = 6) -> np.ndarray:
    """A 16×8 (H×W) JPEG with EXIF orientation; returns the sensor pixels stored."""
    pixels = np.zeros((16, 8, 3), np.uint8)
    pixels[:4] = 255  # a white band along the top of the stored pixels
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, quality=100, exif=exif)
    return pixels


def test_a_phone_jpeg_is_read_the_way_a_viewer_shows_it(tmp_path):
    from PIL import ImageOps

    from autosel.images import image_size, to_tensor

    path = tmp_path / "phone.jpg"
    phone_jpeg(path)
    with Image.open(path) as opened:
        shown = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"), np.float32) / 255
    tensor = to_tensor(path)
    assert tuple(tensor.shape) == (3, 8, 16) and image_size(path) == (8, 16)  # turned a quarter
    assert torch.allclose(tensor, torch.from_numpy(shown).permute(2, 0, 1))


def test_a_pil_image_with_exif_orientation_is_turned_too():
    from autosel.images import to_tensor

    image = Image.new("RGB", (8, 16))
    image.getexif()[0x0112] = 6
    assert tuple(to_tensor(image).shape) == (3, 8, 16)


# 4. study names used in paths

def test_a_study_name_that_is_a_path_is_refused_before_any_folder_is_made(cli_main, tmp_path, space_file):
    outcome = cli_main("search", "--space", space_file, "--workers", "0", "--study", "../../../../x", "--out", tmp_path / "out",
                       "--cache-dir", tmp_path / "cache")
    assert_one_error_line(outcome, "--study '../../../../x' is not a valid study name")
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_a_report_of_a_study_name_that_is_a_path_is_refused(cli_main, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outcome = cli_main("report", "--study", "../outside", "--storage", f"sqlite:///{tmp_path / 'a.db'}")
    assert_one_error_line(outcome, "is not a valid study name")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# 5. a stale Ray cluster file

@pytest.mark.slow
def test_a_stale_ray_cluster_file_does_not_stop_a_private_ray_instance():
    import subprocess
    import sys

    temp = Path(tempfile.mkdtemp(prefix="asr", dir="/tmp"))  # short: Ray's socket paths have a length limit
    try:
        (temp / "ray").mkdir()
        (temp / "ray" / "ray_current_cluster").write_text("127.0.0.1:1")  # left by someone else's `ray start`
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": str(temp)}
        script = ("import ray; from autosel.runtime.workers import start_ray; start_ray(None, num_cpus=1); "
                  "print(ray.cluster_resources().get('CPU')); ray.shutdown()")
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240)
        assert done.returncode == 0 and done.stdout.split()[-1] == "1.0", done.stderr[-2000:]
    finally:
        shutil.rmtree(temp, ignore_errors=True)


# 6. one driver per SQLite store

def test_a_second_driver_on_one_sqlite_store_is_refused_in_one_line(cli_main, tmp_path, space_file):
    from autosel.report import study_summaries
    from autosel.store import driver_lock

    url = f"sqlite:///{tmp_path / 'out' / 'autosel.db'}"
    with driver_lock(url):  # the first driver, busy
        outcome = cli_main("--quiet", "search", "--space", space_file, "--workers", "0", "--out", tmp_path / "out",
                           "--cache-dir", tmp_path / "cache")
    assert_one_error_line(outcome, "is in use by another autosel search", "--storage postgresql://")
    assert study_summaries(url) == []


def test_the_sqlite_driver_lock_is_free_again_once_a_driver_ends(tmp_path):
    from autosel.store import driver_lock

    url = f"sqlite:///{tmp_path / 'autosel.db'}"
    with driver_lock(url):
        pass
    with driver_lock(url):  # not refused
        pass


# 7. and 12. a full disk under --out

def test_a_full_disk_keeps_the_previous_file_and_leaves_no_partial_one(tmp_path, monkeypatch):
    from autosel import atomic

    target = tmp_path / "best.yaml"
    target.write_text("previous")
    full_disk_on_flush(monkeypatch)
    with pytest.raises(atomic.DiskFullError, match=f"no space left on the device .* while writing {target}"):
        atomic.write_text(target, "new")
    assert target.read_text() == "previous" and [p.name for p in tmp_path.iterdir()] == ["best.yaml"]


@pytest.mark.slow
def test_a_search_writing_to_a_full_disk_stops_in_one_line_and_keeps_the_previous_best(cli_main, tmp_path, monkeypatch,
                                                                                       small_space_file, reference_search):
    out = tmp_path / "out"
    shutil.copytree(reference_search, out)  # a finished study: a rerun only confirms and writes
    folder = out / "tiny" / "correspondence"
    before = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    full_disk_on_flush(monkeypatch)
    outcome = cli_main(*search_command([], small_space_file, out, reference_search.parent / "cache", "--quiet"))
    assert_one_error_line(outcome, "no space left on the device", "while writing", "--out")
    assert {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()} == before


def test_extract_on_a_full_disk_is_one_line_and_writes_nothing(cli_main, tmp_path, monkeypatch):
    images, config = image_folder(tmp_path), config_file(tmp_path)
    full_disk_on_flush(monkeypatch)
    outcome = cli_main("--quiet", "extract", "--config", config, "--images", images, "--out", tmp_path / "out" / "f.safetensors")
    assert_one_error_line(outcome, "no space left on the device", "f.safetensors")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_safetensors_error_for_a_full_disk_is_recognised():
    from safetensors import SafetensorError

    from autosel.atomic import is_disk_full

    text = 'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
    assert is_disk_full(SafetensorError(text)) and not is_disk_full(SafetensorError("header too large"))


# 8. the Python API takes what a user would pass

def test_the_api_search_takes_a_model_name_or_a_space_file(small_space_file):
    from autosel.api import as_space

    assert as_space("tiny").model == "tiny"
    assert as_space(small_space_file).search.trials == SEARCH_TRIALS
    assert as_space(str(small_space_file)).model == "tiny"


def test_the_api_search_given_something_else_says_what_it_takes():
    import autosel

    with pytest.raises(TypeError, match="a SearchSpace, a model name or the path of a space YAML file, got int"):
        autosel.search(123)


def test_the_api_search_given_an_unknown_name_raises_the_one_line_error(tmp_path):
    import autosel
    from autosel.errors import AutoselError

    with pytest.raises(AutoselError):
        autosel.search("no-such-model-anywhere", autosel.RunConfig(out=tmp_path / "out", cache_dir=tmp_path / "cache"))


def test_the_api_evaluate_takes_a_config_dict():
    import autosel

    result = autosel.evaluate(TINY_CONFIG, pairs=4, progress=False)
    assert 0.0 <= result.value <= 1.0


def test_the_api_evaluate_given_something_else_says_what_it_takes():
    import autosel

    with pytest.raises(TypeError, match="config must be a FeatureConfig, a dict of one or the path of a YAML file"):
        autosel.evaluate(42)


# 9. text fields are capped

def test_a_twenty_megabyte_prompt_is_refused_naming_the_field():
    from autosel.config import ConfigError, FeatureConfig

    data = {**TINY_CONFIG, "extraction": {"prompt": "x" * 20_000_000}}
    with pytest.raises(ConfigError, match=r"extraction\.prompt: String should have at most 10000 characters"):
        FeatureConfig.from_dict(data)


# 10. extract's file follows the umask

def test_extract_writes_its_file_with_the_umask_s_permissions(cli_main, tmp_path):
    previous = os.umask(0o022)
    try:
        outcome = cli_main("extract", "--config", config_file(tmp_path), "--images", image_folder(tmp_path, 1),
                           "--out", tmp_path / "f.safetensors")
    finally:
        os.umask(previous)
    assert outcome.code == 0, outcome.stderr
    assert stat.S_IMODE((tmp_path / "f.safetensors").stat().st_mode) == 0o644


# 11. SIGTERM and Ctrl-C

def test_sigterm_during_a_search_is_one_line_with_the_resume_command(cli_main, tmp_path, space_file, monkeypatch):
    from autosel.pipeline import Search

    def terminated(self):
        os.kill(os.getpid(), signal.SIGTERM)  # what `docker stop` sends; the handler raises at once
        raise AssertionError("SIGTERM was not turned into a clean stop")

    monkeypatch.setattr(Search, "run", terminated)
    before = signal.getsignal(signal.SIGTERM)
    command = ["--quiet", "search", "--space", str(space_file), "--workers", "0", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c")]
    outcome = cli_main(*command)
    line = assert_one_error_line(outcome, "stopped by SIGTERM", "completed trials", "kept", code=143)
    assert line.endswith("resume with: autosel " + " ".join(command))
    assert signal.getsignal(signal.SIGTERM) is before  # put back once the command ends


def test_ctrl_c_during_a_search_is_one_line_with_the_resume_command(cli_main, tmp_path, space_file, monkeypatch):
    from autosel.pipeline import Search

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Search, "run", interrupted)
    outcome = cli_main("--quiet", "search", "--space", space_file, "--workers", "0", "--out", tmp_path / "out", "--cache-dir", tmp_path / "c")
    line = assert_one_error_line(outcome, "stopped by Ctrl-C", code=130)
    assert "resume with: autosel --quiet search --space " in line


class StoppedPool:
    """One worker whose trial is running when the driver is stopped (Ctrl-C or SIGTERM)."""

    def __init__(self) -> None:
        self.busy: list[int] = []

    def idle(self) -> int:
        return 1 - len(self.busy)

    def submit(self, tag, items, pairs) -> None:
        self.busy.append(tag)

    def poll(self, timeout):
        raise KeyboardInterrupt
        yield


def test_a_stopped_driver_marks_its_running_trial_failed_and_queues_it_again(tmp_path):
    from optuna.trial import TrialState

    from autosel.catalog import list_activations
    from autosel.optimise.driver import Driver
    from autosel.optimise.selection import Candidate
    from autosel.optimise.strategies import make_strategy
    from autosel.optimise.study import open_storage, open_study

    catalogue = {point.id: point for point in list_activations("tiny", 64)}
    candidates = [Candidate(name, (50,), catalogue[name].channels, catalogue[name].depth) for name in list(catalogue)[:3]]
    strategy = make_strategy("random", candidates, 2, 0)
    storage = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    study = open_study(storage, "stopped", {"model": "tiny"}, strategy.sampler())
    driver = Driver(study, storage, strategy, StoppedPool(), candidates, catalogue, 2, None, progress=False, poll_seconds=0.01)
    with pytest.raises(KeyboardInterrupt):
        driver.run(5)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[0].user_attrs["interrupted"] == "interrupted" and trials[1].params == {}
    assert study.get_trials(states=(TrialState.WAITING,))[0].system_attrs["fixed_params"] == trials[0].params


@pytest.mark.slow
def test_sigterm_to_a_search_process_leaves_no_running_trial(tmp_path, small_space_file, autosel_command):
    import json
    import subprocess

    from autosel.optimise.study import open_storage, quiet_optuna

    out = tmp_path / "out"
    command = search_command(autosel_command, small_space_file, out, tmp_path / "cache", "--log-json")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in process.stderr:
        lines.append(line)
        if json.loads(line).get("message", "").startswith("cache:"):
            process.send_signal(signal.SIGTERM)
    process.wait(timeout=240)
    last = json.loads(lines[-1])
    assert process.returncode == 143 and last["level"] == "error", lines[-3:]
    assert "stopped by SIGTERM" in last["message"] and "resume with: autosel --log-json search" in last["message"]
    assert not any("Traceback" in line or "Fatal Python" in line for line in lines)
    quiet_optuna()
    storage = open_storage(f"sqlite:///{out / 'autosel.db'}")
    for summary in optuna.get_all_study_summaries(storage):  # none when stopped before its first trial (dropped)
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))


# 13. pixels must be finite; far out of [0, 1] warns once

def test_a_nan_image_tensor_is_refused():
    from autosel.errors import InvalidInputError
    from autosel.images import to_tensor

    pixels = torch.rand(3, 8, 8)
    pixels[0, 0, 0] = float("nan")
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        to_tensor(pixels)


def test_a_nan_image_tensor_given_to_the_feature_extractor_is_refused():
    from autosel.config import FeatureConfig
    from autosel.errors import InvalidInputError
    from autosel.extract import FeatureExtractor

    extractor = FeatureExtractor(FeatureConfig.from_dict(TINY_CONFIG), device="cpu")
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        extractor(torch.full((1, 3, 64, 64), float("nan")))


def test_a_0_255_image_tensor_warns_once(monkeypatch):
    import autosel.images as images

    monkeypatch.setattr(images, "_warned_range", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images.to_tensor(torch.full((3, 8, 8), 200.0))
        images.to_tensor(torch.full((3, 8, 8), 200.0))
        images.to_tensor(torch.rand(3, 8, 8))
    assert len(caught) == 1 and str(caught[0].message).startswith("image tensor values span [200, 200], far outside [0, 1]")


# 14. every format Pillow reads

def test_a_gif_in_an_image_folder_is_read(cli_main, tmp_path):
    from safetensors import safe_open

    images = image_folder(tmp_path, 1)
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(images / "moving.gif")
    outcome = cli_main("--quiet", "extract", "--config", config_file(tmp_path), "--images", images, "--out", tmp_path / "f.safetensors")
    assert outcome.code == 0 and not outcome.stderr.strip(), outcome.stderr  # nothing skipped
    with safe_open(tmp_path / "f.safetensors", "pt") as written:
        assert sorted(written.keys()) == ["img0.png/mid-vit-out", "moving.gif/mid-vit-out"]


# 15. help keeps <model>

def test_search_help_names_the_default_space_file(cli_main):
    outcome = cli_main("search", "--help", env={"COLUMNS": "300"})
    assert "search_spaces/MODEL.yaml" in " ".join(outcome.stdout.split())
