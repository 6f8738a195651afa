"""The search as visible stages: screen → candidates → cache → optimise → confirm → write.

:class:`Search` holds one search's inputs (what: a :class:`~autosel.space.SearchSpace`; where:
a :class:`~autosel.run_config.RunConfig`; how: :class:`~autosel.run_config.Resources`) and
exposes each stage as a public method whose inputs and outputs are plain objects; ``run()``
chains them (what ``autosel search`` and :func:`autosel.search` do). The driver (this process)
owns the Optuna study and the sweep rows; workers (Ray actors, or this process with
``workers=0``) hold model replicas and do all denoiser work.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import socket
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import optuna
import pandas as pd

from autosel import atomic
from autosel.cache import default_cache_dir, parse_bytes
from autosel.catalog import ActivationPoint, list_activations
from autosel.config import FeatureConfig, mask_password
from autosel.data.specs import shared_split
from autosel.denoiser import resolve_dtype
from autosel.errors import InvalidInputError
from autosel.limits import check_study_name
from autosel.log import event
from autosel.optimise.driver import Driver, DriveStats
from autosel.optimise.selection import TRIAL_ENCODING, Candidate, Selection
from autosel.optimise.strategies import make_strategy
from autosel.optimise.study import completed, open_storage, open_study, pareto_front, quiet_optuna, trials_frame
from autosel.progress import progress_bar
from autosel.protocols import DEFAULT_PROTOCOL
from autosel.resources import presets_folder
from autosel.run_config import Resources, RunConfig
from autosel.runtime.pools import WorkerPool, start_pool
from autosel.runtime.preflight import check_dataset_names, preflight
from autosel.screen import SweepResult, run_sweep, select_candidates, variants
from autosel.screen.sweep import base_config
from autosel.space import SearchSpace, canonical_model
from autosel.store import default_storage, driver_lock, portable_storage
from autosel.tasks import get_task

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


class Search:
    """One search of ``space``, stage by stage (see the module docstring).

    Checks everything it can before any work (names, dataset, device, folders, storage:
    :func:`~autosel.runtime.preflight.preflight`); workers start at the first stage that needs
    them and stop at :meth:`close` (or the end of a ``with`` block).

    Example:
        >>> with Search(load_space("tiny"), RunConfig(out="runs"), Resources(workers=0)) as search:
        ...     sweep = search.screen()
        ...     candidates = search.candidates(sweep)
        ...     search.cache(candidates)
        ...     study, stats = search.optimise(candidates)
        ...     confirmed = search.confirm(study, sweep)
        ...     files = search.write(study, confirmed)

    Raises:
        InvalidInputError: a bad confirmation task, strategy or study of another model/task.
        StorageError: the storage URL cannot be used (password masked).
        ConfigError, UnknownActivationError, DatasetError: a bad space or dataset.
    """

    def __init__(self, space: SearchSpace, run: RunConfig | None = None, resources: Resources | None = None) -> None:
        quiet_optuna()
        self.run_config, self.resources = run or RunConfig(), resources or Resources()
        self.cache_dir = Path(self.run_config.cache_dir or default_cache_dir())
        check_study_name(self.run_config.study)  # a name used in report paths: before any folder is made
        check_confirm_task(space.task, space.search.confirm_task)
        preflight(model=space.model, task=space.task, dataset=space.dataset, device=self.resources.device,
                  out=self.run_config.out, cache_dir=self.cache_dir, strategy=space.search.strategy, both_roles=True,
                  allow_same_split=space.allow_same_split)
        if space.search.confirm_dataset is not None:
            check_dataset_names(*space.confirmation())
        self.space = space.replace(dtype=resolve_dtype(space.dtype, self.resources.device))
        out = Path(self.run_config.out)
        self.folder = out / Path(space.model).name / space.task
        self.storage_url = self.run_config.storage or default_storage(out)
        self.study_name = self.run_config.study or f"{Path(space.model).name}-{space.task}"
        self.identity = {"model": canonical_model(space.model), "task": space.task, "dataset": space.dataset,
                         "encoding": TRIAL_ENCODING}
        self.storage = open_storage(self.storage_url)
        self._pool: WorkerPool | None = None

    @property
    def progress(self) -> bool:
        return self.run_config.progress

    @property
    def confirm_task(self) -> str:
        """The task the confirmations are scored with."""
        return self.space.confirmation()[0]

    @property
    def heldout_label(self) -> str:
        """How confirmation scores are labelled: ``heldout``, or not held-out for a pinned split."""
        dataset = self.space.confirmation()[1]
        return "heldout" if dataset != self.space.dataset or shared_split(dataset) is None else NOT_HELD_OUT

    @functools.cached_property
    def catalogue(self) -> dict[str, ActivationPoint]:
        """The model's activation points, with the space's post-processing variants of its candidates."""
        catalogue = {p.id: p for p in list_activations(self.space.model, self.space.image_size)}
        screened = select_candidates(list(catalogue.values()), self.space.candidates.include,
                                     self.space.candidates.exclude, self.space.model)
        return variants.with_variants(catalogue, [p.id for p in variants.expand(screened, self.space.candidates.post)])

    def pool(self) -> WorkerPool:
        """The workers (started on first use)."""
        if self._pool is None:
            self._pool = start_pool(
                self.resources.workers, self.resources.ray_address, space=self.space.model_dump(mode="json"),
                cache_dir=str(self.cache_dir), cache_memory=parse_bytes(self.run_config.cache_memory),
                device=self.resources.device, batch_size=self.resources.batch_size, quiet=not self.progress,
            )
        return self._pool

    def close(self) -> None:
        """Stop the workers."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> Search:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def screen(self) -> SweepResult:
        """Score every candidate alone at every timestep on the workers (rows the store holds
        are reused); writes ``sweep-HxW-DTYPE-KEY.csv`` and ``.png``."""
        event("screen: start", model=self.space.model, candidates_timesteps=len(self.space.timesteps))
        pool = self.pool()

        def compute(todo: dict[int, list[str]]):
            with progress_bar("screening timesteps", len(todo), self.progress) as advance:
                for rows in pool.imap("screen", [({t: todo[t]},) for t in sorted(todo)]):
                    yield from rows
                    advance(1)

        sweep = run_sweep(self.space, out=self.run_config.out, storage=self.storage_url, progress=self.progress,
                          compute=compute)
        event(f"screen: {sweep.computed} (id, t) scored with {sweep.forwards} forwards, {sweep.reused} reused",
              computed=sweep.computed, forwards=sweep.forwards, reused=sweep.reused, heatmap=str(sweep.heatmap))
        return sweep

    def candidates(self, sweep: SweepResult) -> list[Candidate]:
        """The ``top_m`` best screened activations, each with its ``timesteps_per_candidate`` best timesteps."""
        search = self.space.search
        primary = sweep.primary.sort_values("value", ascending=False, kind="stable")
        best_value = primary.groupby("id", sort=False)["value"].max().sort_values(ascending=False, kind="stable")
        candidates = []
        for name in best_value.index[: search.top_m]:
            rows = primary[primary["id"] == name].head(search.timesteps_per_candidate)
            first = rows.iloc[0]
            candidates.append(Candidate(name, tuple(int(t) for t in rows["timestep"]), int(first["channels"]), float(first["depth"])))
        return candidates

    def cache(self, candidates: list[Candidate]) -> list[tuple[str, int]]:
        """Fill the activation cache with the candidates' (id, t), timestep by timestep on the
        first worker, then load it on every worker; returns the (id, t) cached."""
        cached = cache_entries(candidates)
        timesteps = sorted({t for _, t in cached})
        pool = self.pool()
        with progress_bar("caching timesteps", len(timesteps), self.progress) as advance:
            for timestep in timesteps:
                subset = [pair for pair in cached if pair[1] == timestep]
                event(f"caching t={timestep}: {len(subset)} (id, t)", timestep=timestep, entries=len(subset))
                pool.on_one("fill", subset)
                advance(1)
        pool.broadcast("prepare", cached)
        event(f"cache: {len(cached)} (id, t) of the top {len(candidates)} candidates ready", entries=len(cached))
        return cached

    def optimise(self, candidates: list[Candidate]) -> tuple[optuna.Study, DriveStats]:
        """Run trials on the cached features until the study holds ``search.trials`` COMPLETE ones."""
        search = self.space.search
        study = open_study(self.storage, self.study_name, self.identity, optuna.samplers.RandomSampler())
        study.set_metric_names([get_task(self.space.task).primary_metric])  # the dashboard's objective name
        study.set_user_attr("channel_budget", search.channel_budget)  # the report draws it
        existing = len(study.get_trials(deepcopy=False))
        strategy = make_strategy(search.strategy, candidates, search.max_activations,
                                 driver_seed(self.space.seed, self.storage_url),
                                 driver_seed(self.space.seed, self.storage_url, existing))
        study.sampler = strategy.sampler()  # seeded with the trial count: a resumed sampler must not replay
        driver = Driver(study, self.storage, strategy, self.pool(), candidates, self.catalogue, search.max_activations,
                        search.channel_budget, self.progress)
        stats = driver.run(search.trials)
        event(f"search: {stats.evaluated} trials evaluated, {stats.duplicates} duplicates copied, {stats.retried} retried",
              evaluated=stats.evaluated, duplicates=stats.duplicates, retried=stats.retried, study=self.study_name)
        return study, stats

    def confirm(self, study: optuna.Study, sweep: SweepResult) -> list[Confirmed]:
        """Score the ``confirm_top`` best distinct trials, the best single activation and the
        model's presets on the held-out split through the real extractor at full channels."""
        space = self.space
        base = base_config(space, "unet-in", space.timesteps[0])
        entries: list[tuple[str, FeatureConfig, float | None, int | None]] = []
        seen = set()
        ranked = sorted((t for t in completed(study) if t.user_attrs.get("feasible", True)), key=lambda t: -t.values[0])
        for trial in ranked:
            key = trial.user_attrs.get("selection")
            if key in seen:
                continue
            seen.add(key)
            entries.append((f"trial {trial.number}", selection_of(trial).to_config(base), trial.values[0], trial.number))
            if len(entries) == space.search.confirm_top:
                break
        single = sweep.top(1).iloc[0]
        entries.append((f"best single: {single['id']} @ t={int(single['timestep'])}",
                        base_config(space, single["id"], int(single["timestep"])), float(single["value"]), None))
        for path, preset in presets_items(space.model):
            entries.append((f"preset {path.stem}", preset.replace(extraction=base.extraction), None, None))
        with progress_bar("confirming", len(entries), self.progress) as advance:
            results = self.pool().map("confirm", [(config.to_dict(),) for _, config, _, _ in entries], advance)
        catalogue = self.catalogue
        confirmed = [
            Confirmed(name, config, result["value"], search, sum(catalogue[i].channels for i in config.ids), trial, result["metrics"])
            for (name, config, search, trial), result in zip(entries, results)
        ]
        event(f"confirm: best held-out {100 * confirmed[0].heldout:.1f}", heldout=confirmed[0].heldout,
              configs={c.name: c.heldout for c in confirmed})
        return confirmed

    def write(self, study: optuna.Study, confirmed: list[Confirmed], sweep: SweepResult | None = None) -> list[Path]:
        """Write ``best.yaml`` (the best confirmed config with its score and provenance),
        ``pareto/``, ``trials.csv`` and ``confirmed.csv``; record the outcome in the study."""
        if sweep is not None:
            study.set_user_attr("sweep_key", sweep.key)
        study.set_user_attr("confirmed", [
            {"name": c.name, "heldout": c.heldout, "search": c.search, "channels": c.channels, "trial": c.trial,
             "activations": [a.label for a in c.config.activations], "config": c.config.to_dict()}
            for c in confirmed
        ])
        return write_results(self.folder, self.space, study, confirmed, self.storage_url, self.study_name,
                             self.heldout_label, self.confirm_task)

    def run(self) -> SearchOutcome:
        """Every stage in order; a study this run created is deleted again if it fails before any trial."""
        with driver_lock(self.storage_url):  # one driver per SQLite file; refused before anything is touched
            return self._run()

    def _run(self) -> SearchOutcome:
        existed = self.study_name in {s.study_name for s in optuna.get_all_study_summaries(self.storage, include_best_trial=False)}
        try:
            with self:
                open_study(self.storage, self.study_name, self.identity, optuna.samplers.RandomSampler())  # validates first
                sweep = self.screen()
                candidates = self.candidates(sweep)
                self.cache(candidates)
                study, stats = self.optimise(candidates)
                confirmed = self.confirm(study, sweep)
        except BaseException:
            drop_if_empty(self.storage, self.study_name, existed)
            raise
        files = self.write(study, confirmed, sweep)
        return SearchOutcome(confirmed[0], confirmed, sweep, stats, self.study_name, self.folder, files, self.heldout_label)


def cache_entries(candidates: list[Candidate]) -> list[tuple[str, int]]:
    """The cache entries, by (id, t), a search needs: every candidate at each of its timesteps, sorted."""
    return sorted({(c.id, t) for c in candidates for t in c.timesteps})


def drop_if_empty(storage: optuna.storages.RDBStorage, study_name: str, existed: bool) -> None:
    """Delete the study a failed run created if it holds no trial: no empty study is left."""
    if existed:
        return
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
        if not study.get_trials(deepcopy=False):
            optuna.delete_study(study_name=study_name, storage=storage)
    except Exception:  # noqa: BLE001 - cleanup must not hide the error being raised
        pass


def check_confirm_task(task: str, confirm_task: str | None) -> None:
    """The confirmation task must score the same kind of data as the search's."""
    if confirm_task is None:
        return
    get_task(confirm_task)
    if confirm_task.split("-")[0] != task.split("-")[0]:
        raise InvalidInputError(f"--confirm-task {confirm_task} cannot confirm a {task} search: use a {task.split('-')[0]} task")


def driver_seed(seed: int, storage_url: str, existing_trials: int = 0) -> int:
    """The sampler seed: ``seed`` itself for a new SQLite study (one driver: reproducible), mixed
    with the study's trial count when it resumes (a restarted sampler must not replay the
    proposals of the run it continues), and with this host and process on a server store, where
    several drivers share the study and must not propose the same parameters in lockstep."""
    if storage_url.startswith("sqlite") and existing_trials == 0:
        return seed
    driver = "" if storage_url.startswith("sqlite") else f"{socket.gethostname()}:{os.getpid()}"
    digest = hashlib.sha256(f"{seed}:{existing_trials}:{driver}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def presets_items(model: str) -> list[tuple[Path, FeatureConfig]]:
    """The literature presets of ``model`` (shipped with the package: :mod:`autosel.resources`), by file."""
    items = []
    for path in sorted(presets_folder().glob("*.yaml")):
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


def write_results(folder: Path, space: SearchSpace, study: optuna.Study, confirmed: list[Confirmed], storage_url: str,
                  study_name: str, heldout_label: str = "heldout", confirm_task: str | None = None) -> list[Path]:
    """The search's files (see :meth:`Search.write`); ``confirmed[0]`` is the best."""
    best = confirmed[0]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pareto").mkdir(exist_ok=True)
    stale = set((folder / "pareto").glob("*.yaml"))  # removed once the new files are written
    presets = {c.name.removeprefix("preset "): round(c.heldout, 6) for c in confirmed if c.name.startswith(("preset", "best single"))}
    primary = get_task(space.task).primary_metric
    normalisation, averaging = metric_parts(primary)
    confirm_dataset = space.confirmation()[1]
    confirm_metric = get_task(confirm_task or space.task).primary_metric
    searched = {"search_metric": primary, "search_dataset": space.dataset} if confirm_metric != primary else {}
    protocol = DEFAULT_PROTOCOL if space.task.startswith("correspondence") else None
    versions = {name: package_version(name) for name in ("autosel", "torch", "diffusers", "optuna", "ray")}
    recorded_storage = mask_password(portable_storage(storage_url))
    files = []

    def finished(config: FeatureConfig, heldout: float, search: float | None, trial: int | None) -> FeatureConfig:
        return config.replace(
            score={"task": confirm_task or space.task, "dataset": confirm_dataset, "split": heldout_label,
                   "metric": confirm_metric, "normalisation": metric_parts(confirm_metric)[0],
                   "averaging": metric_parts(confirm_metric)[1], "protocol": protocol, "value": heldout,
                   "search_value": search, **searched, "presets": presets},
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
    for old in stale - set(files):
        old.unlink(missing_ok=True)
    frame = trials_frame(study)
    atomic.write_with(folder / "trials.csv", lambda temporary: frame.to_csv(temporary, index=False))
    files.append(folder / "trials.csv")
    confirmed_frame = pd.DataFrame([
        {"name": c.name, "heldout": c.heldout, "search": c.search, "channels": c.channels, "trial": c.trial,
         "activations": " + ".join(a.label for a in c.config.activations)}
        for c in confirmed
    ])
    atomic.write_with(folder / "confirmed.csv", lambda temporary: confirmed_frame.to_csv(temporary, index=False))
    files.append(folder / "confirmed.csv")
    return files


def package_version(name: str) -> str:
    """The installed version of distribution ``name`` (``unknown`` when it is not installed)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


