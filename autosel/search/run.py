"""``autosel search``: screen → cache the best → combination search → held-out confirm → YAML.

The driver (this process) owns the Optuna study and the sweep rows; workers (Ray actors, or
this process with ``workers=0``) hold model replicas and do all denoiser work.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from autosel.catalog import list_activations
from autosel.config import FeatureConfig, mask_password
from autosel.data.specs import shared_split
from autosel.denoiser import resolve_dtype
from autosel.errors import InvalidInputError
from autosel.log import event
from autosel.protocols import DEFAULT_PROTOCOL
from autosel.progress import progress_bar
from autosel.search import variants
from autosel.search.cache import default_cache_dir, parse_bytes
from autosel.search.driver import DriveStats, optimise
from autosel.search.preflight import preflight
from autosel.search.selection import Candidate, Selection
from autosel.search.space import SearchSpace, canonical_model
from autosel.search.store import default_storage, portable_storage
from autosel.search.strategies import make_strategy
from autosel.search.study import completed, open_storage, open_study, pareto_front, quiet_optuna, trials_frame
from autosel.search.sweep import SweepResult, base_config, run_sweep, select_candidates
from autosel.tasks import get_task

PRESETS_FOLDER = Path(__file__).resolve().parents[2] / "results" / "presets"
NOT_HELD_OUT = "not held-out (same split as the search)"


@dataclass
class Confirmed:
    """A config scored on the held-out split."""

    name: str
    config: FeatureConfig
    heldout: float
    search: float | None
    channels: int
    trial: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class SearchOutcome:
    """Everything a search produced."""

    best: Confirmed
    confirmed: list[Confirmed]
    sweep: SweepResult
    stats: DriveStats
    study: str
    folder: Path
    files: list[Path]
    heldout_label: str = "heldout"


def run_search(
    space: SearchSpace,
    trials: int | None = None,
    workers: int | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    ray_address: str | None = None,
    out: str | Path = "results",
    seed: int | None = None,
    strategy: str = "greedy-tpe",
    cache_dir: str | Path | None = None,
    cache_memory: str | int = "4GB",
    device: str | None = None,
    batch_size: int = 16,
    progress: bool = True,
    allow_same_split: bool = False,
    confirm_task: str | None = None,
) -> SearchOutcome:
    """Search ``space`` and write ``OUT/<model>/<task>/best.yaml``, ``pareto/``, ``trials.csv``.

    A dataset that pins one split for both roles (``spair:PATH:test``) is refused unless
    ``allow_same_split``; then every confirmation score is labelled ``not held-out``.
    ``confirm_task`` scores the confirmations with another task than the search's (e.g.
    ``correspondence-trained``: gdf's trained head); best.yaml's ``score.task`` names it.

    Raises:
        InvalidInputError: ``trials`` < 1, a study of another model/task, a bad strategy.
        StorageError: the storage URL cannot be used (password masked).
        ConfigError, UnknownActivationError, DatasetError: a bad space file or dataset.
    """
    quiet_optuna()
    trials = space.search.trials if trials is None else trials
    if trials < 1:
        raise InvalidInputError(f"--trials must be at least 1, got {trials}")
    cache_dir = Path(cache_dir or default_cache_dir())
    _check_confirm_task(space.task, confirm_task)
    preflight(model=space.model, task=space.task, dataset=space.dataset, device=device, out=out,
              cache_dir=cache_dir, strategy=strategy, both_roles=True, allow_same_split=allow_same_split)
    space = space.replace(dtype=resolve_dtype(space.dtype, device))
    seed = space.seed if seed is None else seed
    out = Path(out)
    folder = out / Path(space.model).name / space.task
    storage_url = storage or default_storage(out)
    study_name = study_name or f"{Path(space.model).name}-{space.task}"
    identity = {"model": canonical_model(space.model), "task": space.task, "dataset": space.dataset}
    rdb = open_storage(storage_url)
    existed = study_name in {summary.study_name for summary in optuna.get_all_study_summaries(rdb, include_best_trial=False)}
    try:
        return _search(space, trials, workers, rdb, storage_url, study_name, identity, ray_address, folder, seed,
                       strategy, cache_dir, cache_memory, device, batch_size, progress, out, confirm_task)
    except BaseException:
        _drop_if_empty(rdb, study_name, existed)
        raise


def _drop_if_empty(rdb: optuna.storages.RDBStorage, study_name: str, existed: bool) -> None:
    """Delete the study this run created if it failed before any trial: no empty study is left."""
    if existed:
        return
    try:
        study = optuna.load_study(study_name=study_name, storage=rdb)
        if not study.get_trials(deepcopy=False):
            optuna.delete_study(study_name=study_name, storage=rdb)
    except Exception:  # noqa: BLE001 - cleanup must not hide the error being raised
        pass


def _check_confirm_task(task: str, confirm_task: str | None) -> None:
    """The confirmation task must score the same kind of data as the search's."""
    if confirm_task is None:
        return
    get_task(confirm_task)
    if confirm_task.split("-")[0] != task.split("-")[0]:
        raise InvalidInputError(f"--confirm-task {confirm_task} cannot confirm a {task} search: use a {task.split('-')[0]} task")


def _search(space, trials, workers, rdb, storage_url, study_name, identity, ray_address, folder, seed, strategy,
            cache_dir, cache_memory, device, batch_size, progress, out, confirm_task) -> SearchOutcome:
    existing = len(open_study(rdb, study_name, identity, optuna.samplers.RandomSampler()).trials)  # validates first
    catalogue = {p.id: p for p in list_activations(space.model, space.image_size)}
    screened = select_candidates(list(catalogue.values()), space.candidates.include, space.candidates.exclude, space.model)
    catalogue = variants.with_variants(catalogue, [p.id for p in variants.expand(screened, space.candidates.post)])
    worker_options = {
        "space": space.model_dump(mode="json"), "cache_dir": str(cache_dir),
        "cache_memory": parse_bytes(cache_memory), "device": device, "batch_size": batch_size, "quiet": not progress,
        "confirm_task": confirm_task,
    }
    actors: list[Any] = []
    try:
        pool, actors, local = _start_workers(workers, ray_address, worker_options)
        event("screen: start", model=space.model, candidates_timesteps=len(space.timesteps))
        sweep = run_sweep(space, out=out, storage=storage_url, progress=progress, compute=_screen_on(actors, local, progress))
        event(f"screen: {sweep.computed} (id, t) scored with {sweep.forwards} forwards, {sweep.reused} reused",
              computed=sweep.computed, forwards=sweep.forwards, reused=sweep.reused, heatmap=str(sweep.heatmap))
        candidates = _top_candidates(sweep, space)
        pairs = sorted({(c.id, t) for c in candidates for t in c.timesteps})
        _prepare(actors, local, pairs, progress)
        event(f"cache: {len(pairs)} (id, t) of the top {len(candidates)} candidates ready", pairs=len(pairs))
        search_strategy = make_strategy(strategy, candidates, space.search.max_activations,
                                        _driver_seed(seed, storage_url), _driver_seed(seed, storage_url, existing))
        study = open_study(rdb, study_name, identity, search_strategy.sampler())
        stats = optimise(study, search_strategy, pool, candidates, catalogue, trials,
                         space.search.max_activations, space.search.channel_budget, progress)
        event(f"search: {stats.evaluated} trials evaluated, {stats.duplicates} duplicates copied, {stats.retried} retried",
              evaluated=stats.evaluated, duplicates=stats.duplicates, retried=stats.retried, study=study_name)
        confirmed = _confirm(study, space, sweep, catalogue, actors, local, progress)
        event(f"confirm: best held-out {100 * confirmed[0].heldout:.1f}", heldout=confirmed[0].heldout,
              configs={c.name: c.heldout for c in confirmed})
        study.set_user_attr("sweep_key", sweep.key)
        study.set_user_attr("confirmed", [
            {"name": c.name, "heldout": c.heldout, "search": c.search, "channels": c.channels, "trial": c.trial,
             "activations": [a.label for a in c.config.activations]}
            for c in confirmed
        ])
    except Exception as error:
        from autosel.search.workers import unwrap_worker_error

        unwrapped = unwrap_worker_error(error)
        if unwrapped is error or os.environ.get("AUTOSEL_DEBUG"):
            raise
        raise unwrapped from None
    finally:
        if actors:
            import ray

            for actor in actors:
                ray.kill(actor)
    best = confirmed[0]
    label = "heldout" if shared_split(space.dataset) is None else NOT_HELD_OUT
    files = _write(folder, space, study, best, confirmed, storage_url, study_name, label, confirm_task or space.task)
    return SearchOutcome(best, confirmed, sweep, stats, study_name, folder, files, label)


def _driver_seed(seed: int, storage_url: str, existing_trials: int = 0) -> int:
    """The sampler seed: ``seed`` itself for a new SQLite study (one driver: reproducible), mixed
    with the study's trial count when it resumes (a restarted sampler must not replay the
    proposals of the run it continues), and with this host and process on a server store, where
    several drivers share the study and must not propose the same parameters in lockstep."""
    if storage_url.startswith("sqlite") and existing_trials == 0:
        return seed
    import hashlib
    import os
    import socket

    driver = "" if storage_url.startswith("sqlite") else f"{socket.gethostname()}:{os.getpid()}"
    digest = hashlib.sha256(f"{seed}:{existing_trials}:{driver}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _start_workers(count: int | None, address: str | None, options: dict[str, Any]) -> tuple[Any, list[Any], Any]:
    from autosel.search.workers import LocalPool, RayPool, Worker, start_ray, start_ray_workers

    if count == 0:
        local = Worker(**options)
        return LocalPool(local), [], local
    start_ray(address)
    if count is None:
        import torch

        count = max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1
    actors = start_ray_workers(count, **options)
    return RayPool(actors), actors, None


def _screen_on(actors: list[Any], local: Any, progress: bool):
    """Screening on the workers, one call per timestep (round-robin), with a bar in the driver."""

    def compute(todo: dict[int, list[str]]):
        with progress_bar("screening timesteps", len(todo), progress) as advance:
            if local is not None:
                for timestep, names in todo.items():
                    yield from local.screen({timestep: names})
                    advance(1)
                return
            import ray

            pending = [actors[n % len(actors)].screen.remote({t: todo[t]}) for n, t in enumerate(sorted(todo))]
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for rows in ray.get(ready):
                    yield from rows
                advance(len(ready))

    return compute


def _prepare(actors: list[Any], local: Any, pairs: Sequence[tuple[str, int]], progress: bool) -> None:
    """Fill the cache timestep by timestep on the first worker, then load it everywhere."""
    timesteps = sorted({t for _, t in pairs})
    with progress_bar("caching timesteps", len(timesteps), progress) as advance:
        for timestep in timesteps:
            subset = [pair for pair in pairs if pair[1] == timestep]
            event(f"caching t={timestep}: {len(subset)} (id, t)", timestep=timestep, pairs=len(subset))
            if local is not None:
                local.fill(subset)
            else:
                import ray

                ray.get(actors[0].fill.remote(subset))
            advance(1)
    if local is not None:
        local.prepare(pairs)
        return
    import ray

    ray.get([actor.prepare.remote(pairs) for actor in actors])


def _top_candidates(sweep: SweepResult, space: SearchSpace) -> list[Candidate]:
    primary = sweep.primary.sort_values("value", ascending=False, kind="stable")
    best_value = primary.groupby("id", sort=False)["value"].max().sort_values(ascending=False, kind="stable")
    candidates = []
    for name in best_value.index[: space.search.top_m]:
        rows = primary[primary["id"] == name].head(space.search.timesteps_per_candidate)
        first = rows.iloc[0]
        candidates.append(Candidate(name, tuple(int(t) for t in rows["timestep"]), int(first["channels"]), float(first["depth"])))
    return candidates


def _confirm(study, space, sweep, catalogue, actors, local, progress: bool = True) -> list[Confirmed]:
    base = base_config(space, "unet-in", space.timesteps[0])
    entries: list[tuple[str, FeatureConfig, float | None, int | None]] = []
    seen = set()
    ranked = sorted((t for t in completed(study) if t.user_attrs.get("feasible", True)), key=lambda t: -t.values[0])
    for trial in ranked:
        key = trial.user_attrs.get("selection")
        if key in seen:
            continue
        seen.add(key)
        selection = selection_of(trial)
        entries.append((f"trial {trial.number}", selection.to_config(base), trial.values[0], trial.number))
        if len(entries) == space.search.confirm_top:
            break
    single = sweep.top(1).iloc[0]
    entries.append((f"best single: {single['id']} @ t={int(single['timestep'])}",
                    base_config(space, single["id"], int(single["timestep"])), float(single["value"]), None))
    for path, preset in presets_items(space.model):
        entries.append((f"preset {path.stem}", preset.replace(extraction=base.extraction), None, None))
    configs = [config.to_dict() for _, config, _, _ in entries]
    with progress_bar("confirming", len(configs), progress) as advance:
        if local is not None:
            results = []
            for config in configs:
                results.append(local.confirm(config))
                advance(1)
        else:
            import ray

            refs = [actors[n % len(actors)].confirm.remote(config) for n, config in enumerate(configs)]
            pending = list(refs)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                advance(len(ready))
            results = ray.get(refs)
    confirmed = [
        Confirmed(name, config, result["value"], search, sum(catalogue[i].channels for i in config.ids), trial, result["metrics"])
        for (name, config, search, trial), result in zip(entries, results)
    ]
    return confirmed


def presets_items(model: str) -> list[tuple[Path, FeatureConfig]]:
    """The literature presets (``results/presets``) of ``model``, by file."""
    items = []
    for path in sorted(PRESETS_FOLDER.glob("*.yaml")):
        preset = FeatureConfig.from_yaml(path)
        if preset.model.name == model:
            items.append((path, preset))
    return items


def presets_for(model: str) -> list[FeatureConfig]:
    """The literature presets of ``model`` (each confirmed beside the search's configs)."""
    return [preset for _, preset in presets_items(model)]


def selection_of(trial: optuna.trial.FrozenTrial) -> Selection:
    """The selection a trial evaluated (its ``items`` user attribute)."""
    return Selection(tuple((str(name), int(t), float(w)) for name, t, w in trial.user_attrs["items"]))


def metric_parts(metric: str) -> tuple[str | None, str | None]:
    """(normalisation, averaging) spelled in a metric name like ``pck@0.1/bbox/point``."""
    parts = metric.split("/")
    return (parts[1], parts[2]) if len(parts) == 3 else (None, None)


def _write(folder, space, study, best, confirmed, storage_url, study_name, heldout_label="heldout",
           confirm_task=None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pareto").mkdir(exist_ok=True)
    for old in (folder / "pareto").glob("*.yaml"):
        old.unlink()
    presets = {c.name.removeprefix("preset "): round(c.heldout, 6) for c in confirmed if c.name.startswith(("preset", "best single"))}
    primary = get_task(space.task).primary_metric
    normalisation, averaging = metric_parts(primary)
    protocol = DEFAULT_PROTOCOL if space.task.startswith("correspondence") else None
    versions = {name: _version(name) for name in ("autosel", "torch", "diffusers", "optuna", "ray")}
    recorded_storage = mask_password(portable_storage(storage_url))
    files = []

    def finished(config: FeatureConfig, heldout: float, search: float | None, trial: int | None) -> FeatureConfig:
        return config.replace(
            score={"task": confirm_task or space.task, "dataset": space.dataset, "split": heldout_label, "metric": primary,
                   "normalisation": normalisation, "averaging": averaging, "protocol": protocol, "value": heldout,
                   "search_value": search, "presets": presets},
            provenance={"study": study_name, "storage": recorded_storage, "trial": trial,
                        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "versions": versions},
        )

    best_path = folder / "best.yaml"
    finished(best.config, best.heldout, best.search, best.trial).to_yaml(best_path)
    files.append(best_path)
    base = base_config(space, "unet-in", space.timesteps[0])
    for trial in pareto_front(completed(study)):
        path = folder / "pareto" / f"trial-{trial.number:04d}.yaml"
        config = selection_of(trial).to_config(base)
        score = {"task": space.task, "dataset": space.dataset, "split": "search", "metric": primary,
                 "normalisation": normalisation, "averaging": averaging, "protocol": protocol, "value": trial.values[0]}
        config.replace(score=score, provenance={"study": study_name, "storage": recorded_storage, "trial": trial.number}).to_yaml(path)
        files.append(path)
    frame = trials_frame(study)
    frame.to_csv(folder / "trials.csv", index=False)
    files.append(folder / "trials.csv")
    pd.DataFrame([
        {"name": c.name, "heldout": c.heldout, "search": c.search, "channels": c.channels, "trial": c.trial,
         "activations": " + ".join(a.label for a in c.config.activations)}
        for c in confirmed
    ]).to_csv(folder / "confirmed.csv", index=False)
    files.append(folder / "confirmed.csv")
    return files


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


