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
import json
import math
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from autosel import atomic
from autosel.cache import ActivationCache, default_cache_dir, parse_bytes
from autosel.cache.fill import search_cache_keys
from autosel.candidates import SpaceCatalogue
from autosel.config import FeatureConfig, mask_password
from autosel.data.specs import shared_split
from autosel.denoiser import resolve_dtype
from autosel.errors import InvalidInputError
from autosel.limits import check_study_name
from autosel.log import event
from autosel.optimise.driver import Driver, DriveStats
from autosel.optimise.selection import TRIAL_ENCODING, Candidate, Selection
from autosel.optimise.strategies import count_selections, make_strategy
from autosel.optimise.study import (
    completed,
    existing_study,
    open_storage,
    open_study,
    pareto_front,
    quiet_optuna,
    trials_frame,
)
from autosel.progress import progress_bar
from autosel.protocols import DEFAULT_PROTOCOL
from autosel.resources import presets_folder
from autosel.run_config import Resources, RunConfig
from autosel.runtime.plan import Plan, make_plan, planned_forwards, space_source, time_plan, worker_count
from autosel.runtime.pools import WorkerPool, start_pool
from autosel.runtime.preflight import check_dataset_names, preflight
from autosel.schema import Sigma, level_key
from autosel.screen import SweepResult, run_sweep
from autosel.screen.sweep import base_config, stored_screen
from autosel.space import SearchSpace, canonical_model
from autosel.store import default_storage, driver_lock, portable_storage
from autosel.tasks import Task, get_task, make_task

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
    forwards: dict[str, int] = field(default_factory=dict)
    """Denoiser forwards run now, by stage (``screen``, ``cache``, ``confirm``): 0 where everything was reused."""


class Search:
    """One search of ``space``, stage by stage (see the module docstring).

    Building one does no I/O; :meth:`check` checks everything it can before any work,
    :meth:`plan` says what the search will do and cost (the dry run), :meth:`run` checks and runs
    every stage. Workers start at the first stage that needs them and stop at :meth:`close` (or
    the end of a ``with`` block).

    Example:
        >>> with Search(load_space("tiny"), RunConfig(out="runs"), Resources(workers=0)) as search:
        ...     search.check()
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
        self.space = space.replace(dtype=resolve_dtype(space.dtype, self.resources.device))
        out = Path(self.run_config.out)
        self.folder = out / Path(space.model).name / space.task
        self.study_name = self.run_config.study or f"{Path(space.model).name}-{space.task}"
        self.identity = {"model": canonical_model(space.model), "task": space.task, "dataset": space.dataset,
                         "encoding": TRIAL_ENCODING}
        self._pool: WorkerPool | None = None
        self._plan: Plan | None = None
        self._checked = False
        self._noise_levels: dict[Any, tuple[float, float]] | None = None
        self.forwards: dict[str, int] = {}
        """Denoiser forwards each stage ran (counted at the capture hook, on the workers)."""

    def check(self) -> None:
        """Everything that can be checked before any work (names, dataset, device, folders,
        storage: :func:`~autosel.runtime.preflight.preflight`); opens the storage.

        Raises:
            InvalidInputError, StorageError, ConfigError, UnknownActivationError, DatasetError.
        """
        if self._checked:
            return
        check_study_name(self.run_config.study)  # a name used in report paths: before any folder is made
        check_confirm_task(self.space.task, self.space.search.confirm_task)
        preflight(model=self.space.model, task=self.space.task, dataset=self.space.dataset, device=self.resources.device,
                  out=self.run_config.out, cache_dir=self.cache_dir, strategy=self.space.search.strategy, both_roles=True,
                  allow_same_split=self.space.allow_same_split)
        if self.space.search.confirm_dataset is not None:
            check_dataset_names(*self.space.confirmation())
        self.storage  # noqa: B018 - opened now: a bad URL fails before any work
        self._checked = True

    @functools.cached_property
    def storage_url(self) -> str:
        """The store's URL (the default SQLite file's folder is made on first use)."""
        return self.run_config.storage or default_storage(self.run_config.out)

    @functools.cached_property
    def storage(self) -> optuna.storages.RDBStorage:
        """The study's storage (opened on first use)."""
        return open_storage(self.storage_url)

    def plan(self, measure: bool = False, source: str | None = None) -> Plan:
        """What the search will do and cost (the dry run), from the offline catalogue and what
        the store already holds (:meth:`count_reuse`; nothing is written): no weights load
        unless ``measure``, which times one forward when there is any to run (a note says why
        when the weights are not at hand). Resolves ``--batch-size auto``."""
        if self._plan is None:
            requested = self.resources.batch_size
            self._plan = make_plan(self.space, source or space_source(self.space.model, None, self.space), "search",
                                   self.resources.device, None if requested == "auto" else requested,
                                   self.resources.workers, presets_for(self.space.model),
                                   cache_memory=parse_bytes(self.run_config.cache_memory))
            self.count_reuse(self._plan)
        if measure and self._plan.seconds_per_image_forward is None:
            if self._plan.total_forwards:
                time_plan(self._plan, self.space, self.resources.device)
            else:
                self._plan.notes.append("time: no forward to run, everything is stored (no model loads)")
        return self._plan

    def count_reuse(self, plan: Plan) -> None:
        """Count in ``plan`` what the store already holds, reading it without writing: a stored
        screen runs no forward, and the top candidates it gives make the cache's count exact
        (the timesteps with an entry missing from the activation cache); a finished study
        caches nothing and confirms exactly the configs it has no held-out score for. A space given as
        ``sigmas:`` keeps the fresh counts (its timesteps are resolved by the run)."""
        if self.space.sigmas is not None:
            return
        url = self.run_config.storage or default_storage(self.run_config.out, make_folder=False)
        todo, sweep = stored_screen(self.space, url, self.search_task)
        if sweep is None:  # a screen not run, or cut short: only its missing timesteps run
            plan.forwards["screen"] = math.ceil(plan.search_images / plan.batch_size) * len(todo)
            if len(todo) < len(self.space.timesteps) and "cache" not in plan.upper_bounds:  # keeps only what it runs
                plan.forwards["cache"] = planned_forwards(self.space, "search", plan.batch_size, plan.search_images,
                                                          plan.heldout_images)["cache"]
                plan.upper_bounds = ["cache", *plan.upper_bounds]
            return
        candidates = self.candidates(sweep)
        plan.forwards["screen"] = 0
        study = existing_study(url, self.study_name)
        if study is not None and self.trials_done(candidates, study):
            configs = [config for _, config, _, _ in self.confirm_entries(study, sweep)]
            previous = self.confirmed_before(study)
            todo = [config for config in configs if self.confirm_key(config) not in previous]
            plan.forwards.update(cache=0, confirm=self.confirm_forwards(todo, worker_count(self.resources.workers)))
            plan.upper_bounds = []
            return
        missing = self.uncached_timesteps(cache_entries(candidates))
        plan.forwards["cache"] = math.ceil(plan.search_images / plan.batch_size) * len(missing)
        plan.upper_bounds = [stage for stage in plan.upper_bounds if stage != "cache"]

    @functools.cached_property
    def search_task(self) -> Task:
        """The search split's proxy task as the driver sees it (for keys and counts; the workers build their own)."""
        return make_task(self.space.task, self.space.dataset, "search", **self.space.task_options())

    @property
    def batch_size(self) -> int:
        """Images per denoiser forward (``auto`` resolved by the plan)."""
        requested = self.resources.batch_size
        return self.plan().batch_size if requested == "auto" else requested

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
    def catalogue(self) -> SpaceCatalogue:
        """The model's activation points and the space's candidates among them."""
        return SpaceCatalogue.of(self.space)

    def pool(self) -> WorkerPool:
        """The workers (started on first use)."""
        if self._pool is None:
            self._pool = start_pool(
                self.resources.workers, self.resources.ray_address, space=self.space,
                cache_dir=str(self.cache_dir), cache_memory=parse_bytes(self.run_config.cache_memory),
                device=self.resources.device, batch_size=self.batch_size, quiet=not self.progress,
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

    @property
    def noise_levels(self) -> dict[Any, tuple[float, float]]:
        """(t, σ) of each of the space's timesteps for its model and image size, recorded in the
        sweep table and every written config: from the study when an earlier run at the same
        size and prompt stored them, else from a worker (the driver loads no weights)."""
        if self._noise_levels is None:
            study = self.open_study()
            record = study.user_attrs.get("noise_levels", {})
            stored = {int(t): tuple(level) for t, level in record.get("levels", {}).items()} \
                if record.get("at") == self._noise_setting() else {}
            if not set(self.space.timesteps) <= set(stored):
                stored.update(self.pool().noise_levels(list(self.space.timesteps)))
                study.set_user_attr("noise_levels", {"at": self._noise_setting(),
                                                     "levels": {str(t): list(level) for t, level in stored.items()}})
            self._noise_levels = stored
        return self._noise_levels

    def _noise_setting(self) -> str:
        """What a timestep's σ depends on besides the model (a flow shift can follow the image size)."""
        return json.dumps({"image_size": self.space.image_size, "prompt": self.space.prompt}, default=str)

    def resolve_sigmas(self) -> None:
        """A space given as ``sigmas:`` becomes the integer timesteps nearest them (the store and
        cache key by t), from the study when an earlier run at the same size and prompt resolved
        them, else from a worker."""
        sigmas = self.space.sigmas
        if sigmas is None:
            return
        study = self.open_study()
        record = study.user_attrs.get("sigma_timesteps", {})
        stored = record.get("timesteps", {}) if record.get("at") == self._noise_setting() else {}
        if not all(str(sigma) in stored for sigma in sigmas):
            stored = {**stored, **dict(zip(map(str, sigmas), self.pool().timesteps_for(sigmas)))}
            study.set_user_attr("sigma_timesteps", {"at": self._noise_setting(), "timesteps": stored})
        self.space = self.space.with_timesteps([stored[str(sigma)] for sigma in sigmas])
        event(f"sigmas {sigmas} are timesteps {self.space.timesteps} here", timesteps=self.space.timesteps)

    def screen(self) -> SweepResult:
        """Score every candidate alone at every timestep on the workers (rows the store holds
        are reused); writes ``sweep-HxW-DTYPE-KEY.csv`` and ``.png``."""
        self.resolve_sigmas()
        event("screen: start", model=self.space.model, candidates_timesteps=len(self.space.timesteps))

        def compute(todo: dict[int, list[str]]):  # called only when the store lacks rows: workers start then
            with progress_bar("screening timesteps", len(todo), self.progress) as advance:
                for rows in self.pool().screen(todo):  # one timestep's rows at a time
                    yield rows
                    advance(1)

        sweep = run_sweep(self.space, out=self.run_config.out, storage=self.storage_url, progress=self.progress,
                          compute=compute, noise_levels=self.noise_levels)
        self.forwards["screen"] = sweep.forwards
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
        """Fill the activation cache with the candidates' (id, t): from the captures the
        screen kept where it did (:func:`~autosel.runtime.plan.keeps_screen`), the rest
        timestep by timestep on the first worker; then load it on every worker. Returns the
        (id, t) cached."""
        cached = cache_entries(candidates)
        pool = self.pool()
        event(f"caching {len(cached)} (id, t) of the top {len(candidates)} candidates", entries=len(cached))
        kept = pool.write_screened(cached)  # what the screen captured: no forward for those
        if kept:
            event(f"cached {kept} (id, t) from the screen's own captures", entries=kept)
        timesteps = self.uncached_timesteps(cached)
        planned = math.ceil(self.plan().search_images / self.batch_size) * len(timesteps)  # the plan's count, now that the top is known
        forwards = 0
        with progress_bar("caching timesteps", len(timesteps), self.progress) as advance:
            for timestep in timesteps:
                subset = [pair for pair in cached if pair[1] == timestep]
                event(f"caching t={timestep}: {len(subset)} (id, t)", timestep=timestep, entries=len(subset))
                forwards += pool.fill(subset)
                advance(1)
        forwards += sum(pool.prepare(cached))
        self.forwards["cache"] = forwards
        event(f"cache: {len(cached)} (id, t) of the top {len(candidates)} candidates ready ({forwards} forwards)",
              entries=len(cached), forwards=forwards, planned=planned)
        return cached

    def uncached_timesteps(self, entries: list[tuple[str, int]]) -> list[int]:
        """The timesteps of ``entries`` with an entry the activation cache does not hold (each
        costs a forward per image batch to fill), read without loading the model."""
        cache = ActivationCache(self.cache_dir)
        keys = search_cache_keys(self.space, self.search_task, self.plan().image_size, entries)
        return sorted({t for (_, t), key in keys.items() if not cache.holds(key)})

    def open_study(self) -> optuna.Study:
        """The search's study (created on first use; one of another model or task is refused)."""
        return open_study(self.storage, self.study_name, self.identity, optuna.samplers.RandomSampler())

    def trials_done(self, candidates: list[Candidate], study: optuna.Study | None = None) -> bool:
        """True when the study (default: the search's) already holds ``search.trials`` COMPLETE
        trials, or every distinct selection of a smaller space."""
        search = self.space.search
        wanted = min(search.trials, count_selections(candidates, search.max_activations))
        return len(completed(study or self.open_study())) >= wanted

    def optimise(self, candidates: list[Candidate]) -> tuple[optuna.Study, DriveStats]:
        """Run trials on the cached features until the study holds ``search.trials`` COMPLETE ones."""
        search = self.space.search
        study = self.open_study()
        study.set_metric_names([get_task(self.space.task).primary_metric])  # the dashboard's objective name
        study.set_user_attr("channel_budget", search.channel_budget)  # the report draws it
        existing = len(study.get_trials(deepcopy=False))
        strategy = make_strategy(search.strategy, candidates, search.max_activations,
                                 driver_seed(self.space.seed, self.storage_url),
                                 driver_seed(self.space.seed, self.storage_url, existing), trials=search.trials)
        study.sampler = strategy.sampler()  # seeded with the trial count: a resumed sampler must not replay
        driver = Driver(study, self.storage, strategy, self.pool(), candidates, self.catalogue.by_name, search.max_activations,
                        search.channel_budget, self.progress)
        stats = driver.run(search.trials)
        event(f"search: {stats.evaluated} trials evaluated, {stats.duplicates} duplicates copied, {stats.retried} retried",
              evaluated=stats.evaluated, duplicates=stats.duplicates, retried=stats.retried, forwards=0, study=self.study_name)
        return study, stats

    def confirm_entries(self, study: optuna.Study, sweep: SweepResult) -> list[tuple[str, FeatureConfig, float | None, int | None]]:
        """What :meth:`confirm` scores, as (name, config, search score, trial): the ``confirm_top``
        best distinct feasible trials, the best single activation and the model's presets."""
        space = self.space
        entries: list[tuple[str, FeatureConfig, float | None, int | None]] = []
        seen = set()
        ranked = sorted((t for t in completed(study) if t.user_attrs.get("feasible", True)), key=lambda t: -t.values[0])
        for trial in ranked:
            key = trial.user_attrs.get("selection")
            if key in seen:
                continue
            seen.add(key)
            entries.append((f"trial {trial.number}", selection_of(trial).to_config(space), trial.values[0], trial.number))
            if len(entries) == space.search.confirm_top:
                break
        single = sweep.top(1).iloc[0]
        entries.append((f"best single: {single['id']} @ t={int(single['timestep'])}",
                        base_config(space, single["id"], int(single["timestep"])), float(single["value"]), None))
        for path, preset in presets_items(space.model):
            entries.append((f"preset {path.stem}", preset.replace(extraction=space.extraction_section()), None, None))
        return entries

    def confirm_forwards(self, configs: list[FeatureConfig], workers: int) -> int:
        """Denoiser forwards confirming ``configs`` on ``workers`` takes: per worker group
        (:func:`confirm_groups`), one per held-out batch and distinct timestep of its configs."""
        batches = math.ceil(self.plan().heldout_images / self.batch_size)
        return sum(batches * len({a.level for n in group for a in configs[n].activations})
                   for group in confirm_groups(configs, workers)) if configs else 0

    def confirm(self, study: optuna.Study, sweep: SweepResult) -> list[Confirmed]:
        """Score the ``confirm_top`` best distinct trials, the best single activation and the
        model's presets (:meth:`confirm_entries`) on the held-out split through the real
        extractor at full channels; configs the study already holds a score for are not redone."""
        entries = self.confirm_entries(study, sweep)
        configs = [config for _, config, _, _ in entries]
        previous = self.confirmed_before(study)
        keys = [self.confirm_key(config) for config in configs]
        todo = [n for n, key in enumerate(keys) if key not in previous]
        results = {n: previous[key] for n, key in enumerate(keys) if key in previous}
        forwards = planned = 0
        if todo:
            groups = confirm_groups([configs[n] for n in todo], self.pool().size)
            planned = self.confirm_forwards([configs[n] for n in todo], self.pool().size)
            with progress_bar("confirming", len(groups), self.progress) as advance:
                answers = self.pool().confirm([[configs[todo[n]].to_dict() for n in group] for group in groups], advance)
            for group, (answer, count) in zip(groups, answers):
                results.update((todo[n], result) for n, result in zip(group, answer))
                forwards += count
        self.forwards["confirm"] = forwards
        confirmed = [
            Confirmed(name, config, results[n]["value"], search, self.catalogue.channels(config.ids), trial,
                      results[n]["metrics"])
            for n, (name, config, search, trial) in enumerate(entries)
        ]
        event(f"confirm: best held-out {100 * confirmed[0].heldout:.1f} ({len(todo)} configs confirmed with {forwards} "
              f"forwards, {len(entries) - len(todo)} reused)", heldout=confirmed[0].heldout, forwards=forwards, planned=planned,
              computed=len(todo), reused=len(entries) - len(todo), configs={c.name: c.heldout for c in confirmed})
        return confirmed

    def confirm_key(self, config: FeatureConfig) -> str:
        """What a held-out score depends on: the config, the confirmation task, its data and options."""
        parts = {"config": config.to_dict(), "task": self.confirm_task, "dataset": self.space.confirmation()[1],
                 "options": self.space.task_options(self.confirm_task), "label": self.heldout_label}
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]

    @staticmethod
    def confirmed_before(study: optuna.Study) -> dict[str, dict]:
        """The held-out results an earlier run of the study recorded, by :meth:`confirm_key`."""
        return {entry["key"]: {"value": entry["heldout"], "metrics": entry.get("metrics", {})}
                for entry in study.user_attrs.get("confirmed", []) if "key" in entry}

    def write(self, study: optuna.Study, confirmed: list[Confirmed], sweep: SweepResult | None = None) -> list[Path]:
        """Write ``best.yaml`` (the best confirmed config with its score and provenance),
        ``pareto/``, ``trials.csv`` and ``confirmed.csv``; record the outcome in the study."""
        if sweep is not None:
            study.set_user_attr("sweep_key", sweep.key)
        study.set_user_attr("confirmed", [
            {"name": c.name, "heldout": c.heldout, "search": c.search, "channels": c.channels, "trial": c.trial,
             "activations": [a.label for a in c.config.activations], "config": c.config.to_dict(),
             "key": self.confirm_key(c.config), "metrics": c.metrics}
            for c in confirmed
        ])
        return write_results(self.folder, self.space, study, confirmed, self.storage_url, self.study_name,
                             self.heldout_label, self.confirm_task, self.noise_levels)

    def run(self) -> SearchOutcome:
        """:meth:`check`, then every stage in order; a study this run created is deleted again
        if it fails before any trial."""
        self.check()
        with driver_lock(self.storage_url):  # one driver per SQLite file; refused before anything is touched
            return self._run()

    def _run(self) -> SearchOutcome:
        existed = self.study_name in {s.study_name for s in optuna.get_all_study_summaries(self.storage, include_best_trial=False)}
        try:
            with self:
                open_study(self.storage, self.study_name, self.identity, optuna.samplers.RandomSampler())  # validates first
                sweep = self.screen()
                candidates = self.candidates(sweep)
                if self.trials_done(candidates):  # a finished study: no cache, no trial (a rerun only confirms what moved)
                    study, stats = self.open_study(), DriveStats()
                    self.forwards["cache"] = 0
                    event(f"search: the study already holds {self.space.search.trials} trials; none run",
                          evaluated=0, duplicates=0, retried=0, forwards=0, study=self.study_name)
                else:
                    self.cache(candidates)
                    study, stats = self.optimise(candidates)
                confirmed = self.confirm(study, sweep)
        except BaseException:
            drop_if_empty(self.storage, self.study_name, existed)
            raise
        files = self.write(study, confirmed, sweep)
        return SearchOutcome(confirmed[0], confirmed, sweep, stats, self.study_name, self.folder, files, self.heldout_label,
                             dict(self.forwards))


def cache_entries(candidates: list[Candidate]) -> list[tuple[str, int]]:
    """The cache entries, by (id, t), a search needs: every candidate at each of its timesteps, sorted."""
    return sorted({(c.id, t) for c in candidates for t in c.timesteps})


def confirm_groups(configs: list[FeatureConfig], workers: int) -> list[list[int]]:
    """``configs`` (by position) in at most ``workers`` groups, each extracted together on one
    worker: sorted by their timesteps, so that configs sharing timesteps share forwards."""
    order = sorted(range(len(configs)), key=lambda n: (sorted(level_key(a.level) for a in configs[n].activations), n))
    count = max(1, min(workers, len(configs)))
    size = -(-len(order) // count)
    return [order[start:start + size] for start in range(0, len(order), size)]


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
    kind = get_task(task).kind
    if get_task(confirm_task).kind != kind:
        raise InvalidInputError(f"--confirm-task {confirm_task} cannot confirm a {task} search: use a {kind} task")


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
                  study_name: str, heldout_label: str = "heldout", confirm_task: str | None = None,
                  noise_levels: Mapping[Any, tuple[float, float]] | None = None) -> list[Path]:
    """The search's files (see :meth:`Search.write`); ``confirmed[0]`` is the best. Each written
    config records (t, σ) per activation from ``noise_levels`` (``{timestep: (t, σ)}``)."""
    levels = noise_levels or {}
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
    protocol = DEFAULT_PROTOCOL if get_task(space.task).kind == "correspondence" else None
    versions = {name: package_version(name) for name in ("autosel", "torch", "diffusers", "optuna", "ray")}
    recorded_storage = mask_password(portable_storage(storage_url))
    files = []

    def finished(config: FeatureConfig, heldout: float, search: float | None, trial: int | None) -> FeatureConfig:
        return config.with_noise_levels(levels).replace(
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
    for trial in pareto_front(completed(study)):
        path = folder / "pareto" / f"trial-{trial.number:04d}.yaml"
        config = selection_of(trial).to_config(space)
        score = {"task": space.task, "dataset": space.dataset, "split": "search", "metric": primary,
                 "normalisation": normalisation, "averaging": averaging, "protocol": protocol, "value": trial.values[0]}
        config.with_noise_levels(levels).replace(
            score=score, provenance={"study": study_name, "storage": recorded_storage, "trial": trial.number}
        ).to_yaml(path)
        files.append(path)
    for old in stale - set(files):
        old.unlink(missing_ok=True)
    frame = trials_frame(study)
    atomic.write_with(folder / "trials.csv", lambda temporary: frame.to_csv(temporary, index=False))
    files.append(folder / "trials.csv")
    confirmed_frame = pd.DataFrame([
        {"name": c.name, "heldout": c.heldout, "search": c.search, "channels": c.channels, "trial": c.trial,
         "activations": " + ".join(a.label for a in c.config.activations),
         "sigmas": " + ".join(_sigma_text(levels, a.level) for a in c.config.activations)}
        for c in confirmed
    ])
    atomic.write_with(folder / "confirmed.csv", lambda temporary: confirmed_frame.to_csv(temporary, index=False))
    files.append(folder / "confirmed.csv")
    return files


def _sigma_text(levels: Mapping[Any, tuple[float, float]], level: Any) -> str:
    """σ of ``level`` for a results table: as given for a σ, else from ``levels`` (blank when unknown)."""
    if isinstance(level, Sigma):
        return f"{float(level):.3f}"
    return f"{levels[level][1]:.3f}" if level in levels else ""


def package_version(name: str) -> str:
    """The installed version of distribution ``name`` (``unknown`` when it is not installed)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


