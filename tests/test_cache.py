"""The activation cache: exact float16 round trips, keys over every input, crash safety, budget."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from autosel.cache import ActivationCache, CacheKey, parse_bytes
from autosel.cache.activations import project, projection_matrix, proxy_map
from autosel.cache.fill import cache_keys, fill_cache
from autosel.errors import InvalidInputError
from autosel.extract import FeatureExtractor
from autosel.models import load_pipeline
from autosel.screen.sweep import base_config
from autosel.space import SearchSpace
from autosel.tasks import make_task


def a_key(**changes) -> CacheKey:
    fields = dict(model="tiny", revision=None, activation="mid-vit-out", timestep=50, dataset="shapes", role="search",
                  images="abc", image_size=(64, 64), resolution=16, projection=None, seed=0, extraction="{}")
    return CacheKey(**{**fields, **changes})


def test_float16_values_round_trip_exactly(tmp_path):
    values = np.random.default_rng(0).standard_normal((3, 5, 4, 4)).astype(np.float16)
    cache = ActivationCache(tmp_path)
    cache.put(a_key(), values)
    assert np.array_equal(ActivationCache(tmp_path).get(a_key()), values)  # a new process-like reader


def test_the_key_changes_when_any_input_changes():
    base = a_key()
    changed = dict(model="sd15", revision="abc", activation="mid-vit-in", timestep=51, dataset="spair:/x", role="heldout",
                   images="abd", image_size=(32, 32), resolution=8, projection=64, seed=1, extraction='{"prompt": "a"}', version=2)
    assert set(changed) == {f.name for f in dataclasses.fields(CacheKey)}
    for name, value in changed.items():
        assert dataclasses.replace(base, **{name: value}).digest != base.digest, name


def test_projection_is_deterministic_per_seed_and_keeps_cosines_roughly():
    assert torch.equal(projection_matrix(512, 64, 0, "a"), projection_matrix(512, 64, 0, "a"))
    assert not torch.equal(projection_matrix(512, 64, 0, "a"), projection_matrix(512, 64, 1, "a"))
    features = torch.randn(1, 512, 8, 8, generator=torch.Generator().manual_seed(0))
    reduced = project(features, 256, seed=0, activation="a")
    assert reduced.shape == (1, 256, 8, 8)
    before = torch.nn.functional.normalize(features[0].flatten(1).T, dim=1)
    after = torch.nn.functional.normalize(reduced[0].flatten(1).T, dim=1)
    assert (before @ before.T - after @ after.T).abs().mean() < 0.06
    assert project(features, 1024, 0, "a") is features  # narrower than D: unchanged


def test_maps_above_the_proxy_resolution_are_pooled_down():
    assert proxy_map(torch.ones(2, 3, 64, 32), 16).shape == (2, 3, 16, 16)
    small = torch.ones(2, 3, 8, 8)
    assert proxy_map(small, 16) is small


@pytest.mark.slow
def test_a_killed_writer_leaves_no_valid_entry(tmp_path):
    script = (
        "import os, numpy as np\n"
        "from autosel.cache import ActivationCache, CacheKey\n"
        f"key = CacheKey(**{dataclasses.asdict(a_key())!r})\n"
        f"writer = ActivationCache({str(tmp_path)!r}).create(key, (4, 2, 2, 2))\n"
        "writer.array[:2] = 1\n"
        "os.kill(os.getpid(), 9)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], check=False)
    assert done.returncode == -9
    assert list(tmp_path.glob("*.partial.npy")) and ActivationCache(tmp_path).get(a_key()) is None


def test_data_without_its_commit_mark_is_not_read(tmp_path):
    cache = ActivationCache(tmp_path)
    cache.put(a_key(), np.zeros((1, 1, 1, 1), np.float16))
    next(tmp_path.glob("*.json")).unlink()  # as if killed between the two renames
    assert ActivationCache(tmp_path).get(a_key()) is None
    assert ActivationCache(tmp_path).clear() == 1 and not list(tmp_path.iterdir())


def test_same_size_garbage_in_an_array_is_caught_by_its_checksum_and_recomputed(tmp_path, caplog):
    values = np.arange(48, dtype=np.float16).reshape(1, 3, 4, 4)
    ActivationCache(tmp_path).put(a_key(), values)
    data = next(tmp_path.glob("*.npy"))
    raw = bytearray(data.read_bytes())
    raw[-8:] = b"\x00\x7c" * 4  # float16 inf where numbers were: same size, valid header
    data.write_bytes(bytes(raw))
    with caplog.at_level("WARNING", logger="autosel.cache"):
        assert ActivationCache(tmp_path).get(a_key()) is None
    assert "checksum does not match" in caplog.text and a_key().digest in caplog.text


def test_entries_report_ok_corrupt_and_incomplete_states(tmp_path):
    cache = ActivationCache(tmp_path)
    for step in (1, 2, 3):
        cache.put(a_key(timestep=step), np.ones((1, 1, 2, 2), np.float16))
    (tmp_path / f"{a_key(timestep=2).digest}.json").write_text("{broken")
    (tmp_path / f"{a_key(timestep=3).digest}.npy").unlink()
    (tmp_path / f"{a_key(timestep=4).digest}.123.partial.npy").write_bytes(b"half")
    states = {entry["digest"]: entry["state"] for entry in ActivationCache(tmp_path).entries(verify=True)}
    assert states == {a_key(timestep=1).digest: "ok", a_key(timestep=2).digest: "corrupt",
                      a_key(timestep=3).digest: "incomplete", a_key(timestep=4).digest: "incomplete"}


def test_clear_broken_keeps_good_entries_and_removes_every_file_of_the_rest(tmp_path):
    cache = ActivationCache(tmp_path)
    cache.put(a_key(timestep=1), np.ones((1, 1, 2, 2), np.float16))
    cache.put(a_key(timestep=2), np.ones((1, 1, 2, 2), np.float16))
    (tmp_path / f"{a_key(timestep=2).digest}.json").write_text("{broken")
    (tmp_path / "notes.txt").write_text("not the cache's")
    assert ActivationCache(tmp_path).clear(broken_only=True) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{a_key(timestep=1).digest}.json", f"{a_key(timestep=1).digest}.npy", "notes.txt"])
    assert ActivationCache(tmp_path).clear() == 1 and [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_full_disk_fails_with_one_line_and_leaves_no_partial_file(tmp_path, monkeypatch):
    import errno
    import os

    from autosel.cache.activations import CacheWriteError

    def full(fd, offset, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(CacheWriteError, match="no space left on the device"):
        ActivationCache(tmp_path).put(a_key(), np.ones((1, 1, 2, 2), np.float16))
    assert not list(tmp_path.iterdir())


def test_entries_beyond_the_memory_budget_are_memory_mapped(tmp_path):
    values = np.ones((4, 8, 8, 8), np.float16)  # 4 KiB
    roomy, tight = ActivationCache(tmp_path / "a", memory_budget="1MB"), ActivationCache(tmp_path / "b", memory_budget=1000)
    assert not isinstance(roomy.put(a_key(), values), np.memmap) and roomy.resident_bytes == values.nbytes
    spilled = tight.put(a_key(), values)
    assert isinstance(spilled, np.memmap) and tight.resident_bytes == 0 and np.array_equal(spilled, values)


def test_sizes_parse_with_units():
    assert parse_bytes("4GB") == 4 * 10**9 and parse_bytes("512MiB") == 512 * 2**20 and parse_bytes(10) == 10
    with pytest.raises(InvalidInputError, match="'lots' is not a size"):
        parse_bytes("lots")


@pytest.fixture(scope="module")
def tiny_extractor():
    space = SearchSpace(model="tiny", image_size=64)
    return FeatureExtractor(base_config(space, "mid-vit-out", 50), pipeline=load_pipeline("tiny"), batch_size=8)


def test_filling_runs_one_forward_per_batch_and_timestep_then_reuses(tiny_extractor, tmp_path):
    task = make_task("correspondence", "shapes", "search", pairs=8)
    pairs = [("mid-vit-out", 50), ("up-level1-repeat0-res-increment", 50), ("up-level1-repeat0-res-increment", 300)]
    keys = cache_keys(tiny_extractor, task, "shapes", "search", pairs, resolution=4, projection=16, seed=0)
    cache = ActivationCache(tmp_path)
    arrays, forwards = fill_cache(cache, tiny_extractor, task, keys, progress=False)
    assert forwards == math.ceil(len(task.images) / 8) * 2
    assert arrays[("up-level1-repeat0-res-increment", 50)].shape == (len(task.images), 16, 4, 4)
    again, forwards = fill_cache(ActivationCache(tmp_path), tiny_extractor, task, keys, progress=False)
    assert forwards == 0 and all(np.array_equal(arrays[p], again[p]) for p in pairs)


def test_cached_values_are_the_extracted_activations_pooled_and_cast(tiny_extractor, tmp_path):
    task = make_task("correspondence", "shapes", "search", pairs=4)
    keys = cache_keys(tiny_extractor, task, "shapes", "search", [("mid-vit-out", 50)], resolution=2, projection=None, seed=0)
    arrays, _ = fill_cache(ActivationCache(tmp_path), tiny_extractor, task, keys, progress=False)
    from autosel.evaluation import image_tensor

    direct = tiny_extractor.extract_timesteps([image_tensor(i) for i in task.images], {50: ["mid-vit-out"]})[50]["mid-vit-out"]
    assert np.array_equal(arrays[("mid-vit-out", 50)], proxy_map(direct, 2).numpy().astype(np.float16))


def test_cli_cache_info_lists_and_clear_deletes(run_cli, tmp_path):
    ActivationCache(tmp_path).put(a_key(), np.zeros((2, 3, 4, 4), np.float16))
    info = run_cli("cache", "info", "--cache-dir", str(tmp_path), "--format", "json")
    assert info.returncode == 0, info.stderr
    [entry] = json.loads(info.stdout)
    assert entry["activation"] == "mid-vit-out" and entry["shape"] == "2×3×4×4"
    cleared = run_cli("cache", "clear", "--cache-dir", str(tmp_path), "--yes")
    assert "deleted 1 entries" in cleared.stdout and not list(tmp_path.glob("*.npy"))
