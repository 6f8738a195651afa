"""The Optuna study in a SQL store: opening it safely, counting, and reading it back.

The driver process owns ask/tell, so a SQLite file has one writer; with PostgreSQL or MySQL
several drivers join one study by name. Heartbeats mark trials of a dead driver stale; they
are failed and re-queued (``RetryHeartbeatStaleTrialCallback``) so the work is redone once.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import Counter
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from autosel.errors import InvalidInputError
from autosel.store import engine_options, existing_engine, with_schema
from autosel.urls import check_storage_url

DIRECTIONS = ("maximize",)
"""The sampler optimises the search score; channels and denoiser cost are recorded per trial
(user attributes ``channels``, ``cost``) for the Pareto front and the channel-budget constraint.
Multi-objective TPE spent its budget along the front and reached only 91.6% of the optimum
in 100 trials on the tiny model (``experiments/search_quality.py``)."""
HEARTBEAT_SECONDS = int(os.environ.get("AUTOSEL_HEARTBEAT_SECONDS", "10"))
GRACE_SECONDS = int(os.environ.get("AUTOSEL_GRACE_SECONDS", "30"))
"""A trial whose driver sent no heartbeat for this long is failed and queued again."""


def quiet_optuna() -> None:
    """Optuna's per-trial info lines off; its warnings stay, except the notes about the
    experimental heartbeat API and about heartbeats outside ``Study.optimize`` (the driver
    records them itself around ask/tell)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


def open_storage(url: str, heartbeat: int | None = None, grace: int | None = None) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats and retry of stale trials; one-line masked errors."""
    check_storage_url(url)
    return with_schema(url, lambda: optuna.storages.RDBStorage(
        url,
        engine_kwargs=engine_options(url),
        heartbeat_interval=heartbeat or HEARTBEAT_SECONDS,
        grace_period=grace or GRACE_SECONDS,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
    ))


def existing_study(url: str, name: str) -> optuna.Study | None:
    """Study ``name`` when the store at ``url`` already holds it, else ``None``; creates
    nothing (no file, table or study: what a dry run's plan reads)."""
    engine = existing_engine(url, "studies")
    if engine is None:
        return None
    engine.dispose()
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_options(url), skip_table_creation=True)
        return optuna.load_study(study_name=name, storage=storage)
    except (KeyError, ValueError, RuntimeError, optuna.exceptions.StorageInternalError):  # no such study, or an older schema
        return None


def open_study(
    storage: optuna.storages.RDBStorage, name: str, identity: dict[str, Any], sampler: optuna.samplers.BaseSampler
) -> optuna.Study:
    """Create or join study ``name``; refuse a study that belongs to another model or task.

    ``identity`` (model, task, dataset) is stored as the study's ``autosel`` user attribute.

    Raises:
        InvalidInputError: the study exists for a different model/task/dataset.
    """
    try:
        study = optuna.create_study(study_name=name, storage=storage, directions=list(DIRECTIONS), sampler=sampler, load_if_exists=True)
    except ValueError as error:  # e.g. a study made by another tool with other directions
        raise InvalidInputError(f"study '{name}' cannot be joined: {error}") from None
    stored = study.user_attrs.get("autosel")
    if stored is None:
        study.set_user_attr("autosel", identity)
    elif any(stored.get(key) != value for key, value in identity.items() if key != "encoding"):
        differences = ", ".join(f"{k} {stored.get(k)!r} (not {v!r})" for k, v in identity.items()
                                if stored.get(k) != v and k != "encoding")
        raise InvalidInputError(
            f"study '{name}' belongs to {differences}; refusing to mix them: choose another --study name"
        )
    elif stored.get("encoding") != identity.get("encoding", stored.get("encoding")):
        raise InvalidInputError(
            f"study '{name}' was made by an earlier autosel whose trials encode selections differently; "
            "continue it with that version, or choose another --study name"
        )
    return study


def states(study: optuna.Study) -> Counter:
    """Trial counts by state name (COMPLETE, RUNNING, WAITING, FAIL…)."""
    return Counter(trial.state.name for trial in study.get_trials(deepcopy=False))


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, score, channels, cost, selection, the σ of each of its
    activations' timesteps (as the search recorded them in the study), params, times."""
    levels = study.user_attrs.get("noise_levels", {}).get("levels", {})  # {"t": [t, σ]} (see Search.noise_levels)
    rows = []
    for trial in study.get_trials(deepcopy=False):
        items = trial.user_attrs.get("items") or []
        sigmas = [levels.get(str(int(t))) for _, t, _ in items]
        rows.append({
            "number": trial.number, "state": trial.state.name,
            "score": trial.values[0] if trial.values else None,
            "channels": trial.user_attrs.get("channels"), "cost": trial.user_attrs.get("cost"),
            "selection": trial.user_attrs.get("selection"),
            "sigmas": " + ".join(f"{level[1]:.3f}" for level in sigmas) if sigmas and all(sigmas) else None,
            "feasible": trial.user_attrs.get("feasible"),
            "duplicate_of": trial.user_attrs.get("duplicate_of"), "driver": trial.user_attrs.get("driver"),
            "seconds": (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.datetime_complete and trial.datetime_start else None,
            **{f"param_{k}": v for k, v in trial.params.items()},
        })
    return pd.DataFrame(rows)


def completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]


def pareto_front(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """Feasible, first-of-their-selection trials not dominated in (score ↑, channels ↓, cost ↓)."""
    unique: dict[str, optuna.trial.FrozenTrial] = {}
    for trial in trials:
        if trial.user_attrs.get("feasible", True) and trial.user_attrs.get("selection") not in unique:
            unique[trial.user_attrs.get("selection")] = trial
    candidates = list(unique.values())

    def objectives(trial: Any) -> tuple[float, float, float]:
        return trial.values[0], trial.user_attrs.get("channels", 0), trial.user_attrs.get("cost", 0.0)

    def dominates(a: Any, b: Any) -> bool:
        (sa, ca, ka), (sb, cb, kb) = objectives(a), objectives(b)
        return sa >= sb and ca <= cb and ka <= kb and (sa > sb or ca < cb or ka < kb)

    return sorted((t for t in candidates if not any(dominates(o, t) for o in candidates)), key=lambda t: -t.values[0])
