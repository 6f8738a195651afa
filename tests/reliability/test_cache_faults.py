"""Cache faults: bytes changed on disk are caught by the checksum and recomputed to the same
values; `cache info`/`verify`/`clear` see every entry, broken ones included; a full disk is one
line with nothing partial left."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
from conftest import assert_one_error_line

from autosel.cache import ActivationCache


@pytest.fixture(scope="module")
def tiny_run():
    from autosel.encoding import model_run
    from autosel.space import SearchSpace

    return model_run(SearchSpace(model="tiny", image_size=64), batch_size=8)


def fill(tiny_run, cache_dir):
    from autosel.cache.fill import cache_keys, fill_cache
    from autosel.tasks import make_task

    task = make_task("correspondence", "shapes", "search", pairs=6)
    pairs = [("mid-vit-out", 50), ("up-level1-repeat0-res-out", 50)]
    keys = cache_keys(tiny_run, task, "shapes", "search", pairs, resolution=4, projection=None, seed=0)
    return fill_cache(ActivationCache(cache_dir), tiny_run, task, keys, progress=False), keys


def test_same_size_garbage_in_a_cached_array_is_recomputed_to_the_true_values(tiny_run, tmp_path, caplog):
    (truth, forwards), keys = fill(tiny_run, tmp_path)
    victim = keys[("mid-vit-out", 50)]
    data = tmp_path / f"{victim.digest}.npy"
    array = np.load(data)
    np.save(data, np.random.default_rng(0).standard_normal(array.shape).astype(np.float16))  # same size, valid .npy
    with caplog.at_level("WARNING", logger="autosel.cache"):
        (again, recomputed), _ = fill(tiny_run, tmp_path)
    assert recomputed > 0 and victim.digest in caplog.text and "checksum does not match" in caplog.text
    assert all(np.array_equal(truth[pair], again[pair]) for pair in truth)


def corrupt_cache(tmp_path):
    cache = ActivationCache(tmp_path)
    for step in (1, 2, 3, 5):
        cache.put(_key(step), np.ones((1, 2, 2, 2), np.float16))
    np.save(tmp_path / f"{_key(2).digest}.npy", np.zeros((1, 2, 2, 2), np.float16))  # same size, other values
    (tmp_path / f"{_key(3).digest}.json").write_text("{")  # a broken record
    (tmp_path / f"{_key(4).digest}.77.partial.npy").write_bytes(b"x")  # an interrupted writer's leftover
    truncated = tmp_path / f"{_key(5).digest}.npy"
    truncated.write_bytes(truncated.read_bytes()[:-6])


def _key(step):
    from autosel.cache import CacheKey

    return CacheKey(model="tiny", revision=None, activation="mid-vit-out", timestep=step, dataset="shapes", role="search",
                    images="x", image_size=(64, 64), resolution=4, projection=None, seed=0)


def test_cache_info_lists_every_entry_with_its_state(cli_main, tmp_path):
    corrupt_cache(tmp_path)
    outcome = cli_main("cache", "info", "--cache-dir", tmp_path, "--format", "json")
    assert outcome.code == 0, outcome.stderr
    states = sorted(entry["state"] for entry in json.loads(outcome.stdout))
    assert states == ["corrupt", "corrupt", "incomplete", "ok", "ok"]  # entry 2's checksum is read by `verify` only


def test_cache_verify_finds_changed_bytes_and_exits_with_one(cli_main, tmp_path):
    corrupt_cache(tmp_path)
    outcome = cli_main("cache", "verify", "--cache-dir", tmp_path, "--format", "json")
    assert outcome.code == 1 and "4 of 5 entries are corrupt or incomplete" in outcome.stderr
    states = {entry["digest"]: entry["state"] for entry in json.loads(outcome.stdout)}
    assert states[_key(1).digest] == "ok" and states[_key(2).digest] == "corrupt"


def test_cache_clear_broken_then_clear_leaves_only_foreign_files(cli_main, tmp_path):
    corrupt_cache(tmp_path)
    (tmp_path / "README.txt").write_text("mine")
    assert "deleted 4 entries" in cli_main("cache", "clear", "--broken", "--cache-dir", tmp_path, "--yes").stdout
    assert cli_main("cache", "verify", "--cache-dir", tmp_path).code == 0
    assert "deleted 1 entries" in cli_main("cache", "clear", "--cache-dir", tmp_path, "--yes").stdout
    assert [path.name for path in tmp_path.iterdir()] == ["README.txt"]


@pytest.mark.slow
def test_a_full_cache_disk_stops_the_search_in_one_line_and_leaves_nothing_partial(cli_main, space_file, tmp_path, monkeypatch):
    def full(fd, offset, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    outcome = cli_main("--quiet", "search", "--space", space_file, "--workers", "0", "--out", tmp_path / "out",
                       "--cache-dir", tmp_path / "cache")
    assert_one_error_line(outcome, "cannot write to the activation cache", "no space left on the device", "--cache-dir")
    assert not list((tmp_path / "cache").iterdir())
    from autosel.report import study_summaries

    assert study_summaries(f"sqlite:///{tmp_path / 'out' / 'autosel.db'}") == []  # no empty study left behind
