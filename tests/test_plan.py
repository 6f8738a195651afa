"""Real-size onboarding: the plan and --dry-run, dtype everywhere, size and proxy flags,
--space alone, and folder spellings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from autosel.denoiser import resolve_dtype
from autosel.encoding import model_run
from autosel.errors import InvalidInputError
from autosel.runtime.plan import make_plan
from autosel.screen import run_sweep
from autosel.screen.sweep import sweep_key
from autosel.space import SearchSpace, canonical_model, same_model
from autosel.tasks import make_task

SMALL = {"model": "tiny", "image_size": 64, "timesteps": [50, 300],
         "candidates": {"include": ["up-level1-repeat0-*"], "exclude": ["*-map"]}, "proxy": {"pairs": 8}}


@pytest.fixture
def cli(monkeypatch):
    """``autosel ARGS…`` in this process, run from folder ``cwd`` with its cache in ``cache``."""
    from cli_runner import invoke_cli

    def run(*args: str, cwd: Path, cache: Path):
        monkeypatch.chdir(cwd)
        return invoke_cli(*args, env={"AUTOSEL_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"})

    return run


@pytest.mark.slow
def test_dry_run_prints_the_plan_and_writes_nothing(cli, tmp_path):
    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    done = cli("search", "--model", "tiny", "--pairs", "8", "--dry-run", cwd=work, cache=cache)
    assert done.returncode == 0, done.stderr
    for fact in ("denoiser forwards", "screen 5, cache 0, confirm ≤", "(≤: at most; confirm", "kept for the cache",
                 "peak memory per worker", "activation cache",
                 "time ≈", "float32 on cpu"):
        assert fact in done.stdout, fact
    assert list(work.iterdir()) == [] and not cache.exists()


@pytest.mark.slow
def test_space_alone_implies_its_model_and_flags_override_it(cli, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({**SMALL, "model": "tiny-random"}))
    done = cli("sweep", "--space", str(space), "--image-size", "64x96", "--pairs", "4",
               "--dtype", "bfloat16", "--dry-run", cwd=tmp_path, cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert "plan: tiny-random (sd), bfloat16" in done.stdout
    assert "64x96 px" in done.stdout and "8 search images" in done.stdout


def test_a_bad_dtype_is_refused_in_one_line(cli, tmp_path):
    done = cli("sweep", "--model", "tiny", "--dtype", "float64", "--dry-run", cwd=tmp_path, cache=tmp_path / "c")
    assert done.returncode == 2 and "float64" in done.stderr and "Traceback" not in done.stderr


def test_planned_screen_forwards_are_what_the_sweep_runs(tmp_path):
    space = SearchSpace.from_dict(SMALL)
    plan = make_plan(space, "test", stage="sweep", device="cpu", batch_size=4)
    result = run_sweep(space, out=tmp_path, batch_size=4, progress=False, write_files=False)
    assert plan.forwards["screen"] == result.forwards == 8  # 16 images / 4 per batch x 2 timesteps


def test_a_sweep_plan_counts_only_the_timesteps_its_store_lacks(tmp_path):
    from autosel import api
    from autosel.run_config import Resources, RunConfig

    space = SearchSpace.from_dict(SMALL)
    run_sweep(space.replace(timesteps=[50]), out=tmp_path, batch_size=4, progress=False, write_files=False)
    plan = api.sweep_plan(space, Resources(batch_size=4), "test", run=RunConfig(out=tmp_path))
    assert plan.forwards["screen"] == 4  # t=300 only: 16 images / 4 per batch
    result = run_sweep(space, out=tmp_path, batch_size=4, progress=False, write_files=False)
    assert result.forwards == plan.forwards["screen"]


def test_a_dry_run_reads_a_store_that_does_not_exist_without_creating_it(tmp_path):
    from autosel import api
    from autosel.run_config import Resources, RunConfig

    store = tmp_path / "nowhere" / "autosel.db"
    plan = api.sweep_plan(SearchSpace.from_dict(SMALL), Resources(batch_size=4), "test",
                          run=RunConfig(out=tmp_path / "out", storage=f"sqlite:///{store}"))
    assert plan.forwards["screen"] == 8
    assert not store.parent.exists() and not (tmp_path / "out").exists()


def test_without_a_gpu_the_default_dtype_is_float32():
    assert resolve_dtype(None, "cpu") == "float32" and resolve_dtype("bfloat16", "cpu") == "bfloat16"
    with pytest.raises(InvalidInputError, match="float64"):
        resolve_dtype("float64")


def test_the_space_dtype_reaches_the_denoiser_and_the_sweep_key():
    space = SearchSpace.from_dict({**SMALL, "model": "tiny-random", "dtype": "bfloat16"})
    run = model_run(space, device="cpu", batch_size=2)
    assert str(run.denoiser.dtype) == "torch.bfloat16" and run.denoiser.vae.dtype.is_floating_point
    task = make_task("correspondence", "shapes", "search", pairs=8)
    half = sweep_key(space, task, (64, 64))
    full_space = space.replace(dtype="float32")
    assert half != sweep_key(full_space, task, (64, 64))


def test_folder_spellings_name_one_model(tmp_path, monkeypatch):
    folder = tmp_path / "pipe"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)
    assert same_model("./pipe", "pipe/") and same_model("pipe", str(folder))
    assert canonical_model("./pipe/") == canonical_model(str(folder)) == str(folder.resolve())
    assert canonical_model("sdxl") == "sdxl" and not same_model("sd15", "sd21")


def test_without_a_bar_progress_goes_out_as_messages(monkeypatch):
    import autosel.progress
    from autosel.progress import progress_bar

    said = []
    monkeypatch.setenv("AUTOSEL_PROGRESS", "0")
    monkeypatch.setattr(autosel.progress, "event", lambda message, **fields: said.append((message, fields)))
    monkeypatch.setattr(autosel.progress, "MESSAGE_EVERY_SECONDS", 0.0)
    with progress_bar("screening", 3) as advance:
        for _ in range(3):
            advance(1)
    assert [message for message, _ in said] == ["screening: 1/3", "screening: 2/3", "screening: 3/3"]
    assert said[-1][1]["done"] == said[-1][1]["total"] == 3


def test_auto_batch_size_is_smaller_on_a_device_with_less_free_memory():
    space = SearchSpace.from_dict(SMALL)
    roomy = make_plan(space, "test", "search", "cpu", None, free_memory=64 * 2**30)
    per_image = roomy.memory["captures"] // roomy.batch_size + roomy.memory["forward"] // roomy.batch_size
    fixed = roomy.memory["total"] - roomy.memory["captures"] - roomy.memory["forward"]
    tight = make_plan(space, "test", "search", "cpu", None, free_memory=int((fixed + 3.5 * per_image) / 0.8))
    assert roomy.batch_size == roomy.search_images and tight.batch_size == 3
    assert tight.forwards["screen"] == -(-tight.search_images // 3) * len(space.timesteps)


def test_when_batch_one_does_not_fit_the_plan_says_what_would():
    plan = make_plan(SearchSpace.from_dict(SMALL), "test", "search", "cpu", None, free_memory=2**20)
    assert plan.batch_size == 1
    note = next(note for note in plan.notes if "batch 1 does not fit" in note)
    assert "--image-size" in note and "--dtype" in note and "--include" in note


def test_under_log_json_the_dry_run_plan_is_one_json_event(cli, tmp_path):
    import json

    done = cli("--log-json", "sweep", "--model", "tiny", "--pairs", "4", "--timesteps", "50", "--dry-run",
               cwd=tmp_path, cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    plan = next(e for e in events if e.get("event") == "plan")
    assert plan["forwards"] == {"screen": 1} and plan["batch_size"] == 8 and plan["seconds_per_image_forward"] > 0
    assert "plan:" not in done.stdout


@pytest.mark.slow
def test_a_dry_run_plans_without_the_weights_and_says_the_time_is_missing(cli, tmp_path):
    done = cli("search", "--model", "sd15", "--dataset", "shapes", "--pairs", "4", "--image-size", "128", "--dry-run",
               cwd=tmp_path, cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert "plan: sd15" in done.stdout and "time: not estimated, the weights are not at hand" in done.stdout
