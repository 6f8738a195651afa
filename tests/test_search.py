"""The search end to end on the tiny model: real Optuna studies in SQLite and PostgreSQL, real
Ray actors, resume after SIGKILL, a killed worker, concurrent drivers, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml
from fixture_data import small_search_space

from autosel.config import FeatureConfig
from autosel.errors import InvalidInputError
from autosel.optimise.study import completed, open_storage
from autosel.space import SearchSpace

SPACE = small_search_space(trials=8)


@pytest.fixture(scope="module")
def ray_cluster():
    """A real single-node Ray instance with 2 CPUs for this module."""
    import ray

    from autosel.runtime.workers import RAY_OBJECT_STORE_BYTES

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=RAY_OBJECT_STORE_BYTES, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def space_file(tmp_path) -> Path:
    path = tmp_path / "tiny-small.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return path


def run_search(tmp_path, workers=0, trials=None, storage=None, study=None):
    import autosel

    space = SearchSpace.from_dict(SPACE)
    if trials is not None:
        space = space.replace(search={**space.search.model_dump(), "trials": trials})
    run = autosel.RunConfig(out=tmp_path / "results", storage=storage, study=study, cache_dir=tmp_path / "cache", progress=False)
    return autosel.search(space, run, autosel.Resources(workers=workers))


def study_of(url: str, name: str = "tiny-correspondence") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(url))


@pytest.mark.slow
def test_search_on_ray_workers_writes_a_best_config_that_extract_loads(ray_cluster, tmp_path, run_cli):
    outcome = run_search(tmp_path, workers=1, trials=6)
    folder = tmp_path / "results" / "tiny" / "correspondence"
    best = FeatureConfig.from_yaml(folder / "best.yaml")
    assert best.score.split == "heldout" and best.score.metric == "pck@0.1/bbox/point"
    assert best.score.normalisation == "bbox" and best.score.averaging == "point"
    assert best.score.value == pytest.approx(outcome.best.heldout) and best.score.search_value is not None
    assert "legacy-tiny" in best.score.presets and any(k.startswith("best single") for k in best.score.presets)
    assert best.provenance.study == "tiny-correspondence" and best.provenance.storage.startswith("sqlite:///")
    assert {"optuna", "ray", "torch", "diffusers"} <= set(best.provenance.versions)
    assert list((folder / "pareto").glob("*.yaml")) and (folder / "trials.csv").is_file()
    assert len(completed(study_of(f"sqlite:///{tmp_path / 'results' / 'autosel.db'}"))) == 6
    done = run_cli("extract", "--config", str(folder / "best.yaml"), "--images", str(Path(__file__).parents[1] / "results" / "tiny" / "samples.png"),
                   "--out", str(tmp_path / "f.safetensors"))
    assert done.returncode == 0, done.stderr
    exported = run_cli("export", "--config", str(folder / "best.yaml"), "--to", "gdf", "--out", str(tmp_path / "gdf"))
    assert exported.returncode == 0 and list((tmp_path / "gdf").glob("layers*.json")), exported.stderr


@pytest.mark.slow
def test_rerunning_continues_the_study_without_recomputing(ray_cluster, tmp_path):
    first = run_search(tmp_path, workers=1, trials=5)
    again = run_search(tmp_path, workers=1, trials=8)
    assert first.stats.evaluated + first.stats.duplicates == 5
    assert again.stats.evaluated + again.stats.duplicates == 3
    assert again.sweep.forwards == 0  # the screen came from the store


@pytest.mark.slow
def test_two_ray_workers_each_keep_their_part_of_the_screen_for_the_cache(ray_cluster, tmp_path):
    spread = run_search(tmp_path / "two", workers=2, trials=4)
    alone = run_search(tmp_path / "driver", workers=0, trials=4)
    assert spread.forwards["cache"] == alone.forwards["cache"] == 0 and spread.forwards["screen"] > 0
    assert [(c.name, c.heldout) for c in spread.confirmed] == [(c.name, c.heldout) for c in alone.confirmed]


@pytest.mark.slow
def test_search_with_postgresql_storage(tmp_path, postgres_url):
    outcome = run_search(tmp_path, workers=0, trials=4, storage=postgres_url)
    assert len(completed(study_of(postgres_url))) == 4
    assert FeatureConfig.from_yaml(outcome.files[0]).provenance.storage == postgres_url


@pytest.mark.slow
def test_a_worker_killed_mid_trial_leads_to_a_retried_trial(ray_cluster, tmp_path):
    import autosel

    space = SearchSpace.from_dict(SPACE)
    space = space.replace(search={**space.search.model_dump(), "strategy": "tpe", "trials": 3, "max_activations": 2})
    run = autosel.RunConfig(out=tmp_path, storage=f"sqlite:///{tmp_path / 'db.sqlite'}", study="kill",
                            cache_dir=tmp_path / "cache", progress=False)
    with autosel.Search(space, run, autosel.Resources(workers=1)) as search:
        candidates = search.candidates(search.screen())
        search.cache(candidates)
        pool, submit = search.pool(), search.pool().submit

        def submit_then_kill_the_worker(tag, items, pairs):
            submit(tag, items, pairs)
            if not getattr(pool, "killed", False):
                pool.killed = True
                os.kill(ray_cluster.get(pool.actors[0].pid.remote()), signal.SIGKILL)

        pool.submit = submit_then_kill_the_worker
        study, stats = search.optimise(candidates)
    assert stats.retried == 1 and len(completed(study)) == 3
    assert any("retry_of" in t.user_attrs for t in completed(study))


@pytest.mark.slow
def test_resume_after_sigkill_loses_no_completed_trial(tmp_path, space_file, autosel_command):
    out, db = tmp_path / "results", tmp_path / "results" / "autosel.db"
    command = [*autosel_command, "search", "--model", "tiny", "--space", str(space_file), "--workers", "0", "--out", str(out),
               "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    environment = {**os.environ, "AUTOSEL_HEARTBEAT_SECONDS": "1", "AUTOSEL_GRACE_SECONDS": "3"}
    driver = subprocess.Popen([*command, "--trials", "200"], env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    before: dict[int, tuple] = {}
    while time.time() < deadline and len(before) < 5:
        time.sleep(0.5)
        if db.exists():
            try:
                before = {t.number: tuple(t.values) for t in completed(study_of(f"sqlite:///{db}"))}
            except (KeyError, Exception):  # noqa: BLE001 - the study may not exist yet
                before = {}
        assert driver.poll() is None, driver.stderr.read().decode()
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert len(before) >= 5
    target = len(completed(study_of(f"sqlite:///{db}"))) + 3
    done = subprocess.run([*command, "--trials", str(target)], env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    after = {t.number: tuple(t.values) for t in completed(study_of(f"sqlite:///{db}"))}
    assert len(after) == target
    assert all(after[number] == values for number, values in before.items())


@pytest.mark.slow
def test_two_drivers_on_one_postgresql_study_complete_exactly_the_requested_trials(tmp_path, space_file, autosel_command, postgres_url):
    def driver(name):
        return subprocess.Popen(
            [*autosel_command, "search", "--model", "tiny", "--space", str(space_file), "--workers", "0", "--trials", "12",
             "--storage", postgres_url, "--out", str(tmp_path / name), "--cache-dir", str(tmp_path / "cache"), "--no-progress"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )

    first, second = driver("a"), driver("b")
    for process in (first, second):
        assert process.wait(timeout=400) == 0, process.stderr.read()
    trials = completed(study_of(postgres_url))
    assert len(trials) == 12
    evaluated = [t.user_attrs["selection"] for t in trials if "duplicate_of" not in t.user_attrs]
    assert len(evaluated) == len(set(evaluated))
    # the greedy walk lives in the study: the drivers share one plan, nothing is run or copied twice
    assert len({t.user_attrs["selection"] for t in trials}) == 12
    # which driver ran how many is timing: the first to finish screening may run them all (the
    # other then finds the plan done), so only the total and the distinctness are asserted


def test_trials_zero_is_refused(run_cli, space_file, tmp_path):
    done = run_cli("search", "--model", "tiny", "--space", str(space_file), "--trials", "0", "--out", str(tmp_path))
    assert done.returncode == 2 and "--trials must be at least 1" in done.stderr


def test_unreachable_storage_masks_the_password(run_cli, space_file, tmp_path):
    done = run_cli("search", "--model", "tiny", "--space", str(space_file), "--out", str(tmp_path),
                   "--storage", "postgresql://alice:s3cret@127.0.0.1:1/nowhere")
    assert done.returncode == 2 and "postgresql://alice:***@127.0.0.1:1/nowhere" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout and done.stderr.count("\n") == 1


def test_a_study_of_another_task_is_not_mixed(tmp_path):
    from autosel.optimise.study import open_study

    storage = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    open_study(storage, "mine", {"model": "tiny", "task": "segmentation", "dataset": "shapes"}, optuna.samplers.RandomSampler())
    with pytest.raises(InvalidInputError, match=r"study 'mine' belongs to task 'segmentation' \(not 'correspondence'\)"):
        run_search(tmp_path, workers=0, storage=f"sqlite:///{tmp_path / 'db.sqlite'}", study="mine")


def test_space_files_with_an_unknown_key_or_an_unknown_id_are_refused(run_cli, tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump({**SPACE, "search": {"trails": 3}}))
    done = run_cli("search", "--model", "tiny", "--space", str(typo), "--out", str(tmp_path))
    assert done.returncode == 2 and "search.trails: unknown field. Did you mean 'trials'" in done.stderr
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(yaml.safe_dump({**SPACE, "candidates": {"include": ["up-level1-repeat0-res-incremnt"], "exclude": []}}))
    done = run_cli("search", "--model", "tiny", "--space", str(unknown), "--out", str(tmp_path))
    assert done.returncode == 2 and "matches no activation of tiny" in done.stderr and "up-level1-repeat0-res-increment" in done.stderr


def test_a_storage_file_under_the_working_directory_is_recorded_relative_to_it(tmp_path, monkeypatch):
    from autosel.store import portable_storage

    monkeypatch.chdir(tmp_path)
    assert portable_storage(f"sqlite:///{tmp_path / 'results' / 'autosel.db'}") == "sqlite:///results/autosel.db"
    assert portable_storage("sqlite:////elsewhere/autosel.db") == "sqlite:////elsewhere/autosel.db"
    assert portable_storage("postgresql://user:pw@host/db") == "postgresql://user:pw@host/db"
