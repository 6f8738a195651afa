"""The Python API of the main jobs: :func:`search`, :func:`sweep` and :func:`evaluate`.

Each takes *what* (a :class:`~autosel.space.SearchSpace` or a
:class:`~autosel.config.FeatureConfig`), *where* (:class:`~autosel.run_config.RunConfig`) and
*how* (:class:`~autosel.run_config.Resources`), and returns a result object; the command line
is a thin layer over these three.

Example:
    >>> import autosel
    >>> space = autosel.load_space("tiny").replace(search={**autosel.load_space("tiny").search.model_dump(), "trials": 20})
    >>> outcome = autosel.search(space, autosel.RunConfig(out="runs"), autosel.Resources(workers=0))
    >>> outcome.best.heldout, outcome.files[0]
    (0.52..., PosixPath('runs/tiny/correspondence/best.yaml'))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from autosel.config import FeatureConfig
from autosel.pipeline import Search, SearchOutcome
from autosel.run_config import Resources, RunConfig
from autosel.runtime.plan import Plan
from autosel.screen import SweepResult
from autosel.space import SearchSpace
from autosel.tasks import TaskResult, get_task


def search(space: SearchSpace | str | Path, run: RunConfig | None = None, resources: Resources | None = None) -> SearchOutcome:
    """Screen, cache, search combinations, confirm on held-out data and write
    ``OUT/<model>/<task>/best.yaml`` (see :class:`~autosel.pipeline.Search` for the stages).

    ``space`` is a :class:`~autosel.space.SearchSpace`, a model name (its space, as
    ``autosel search --model NAME`` finds it) or the path of a space YAML file.
    Rerunning continues the study (``space.search.trials`` counts COMPLETE trials in total).

    Raises:
        TypeError: ``space`` is none of these; ConfigError: a bad space file.
    """
    return Search(as_space(space), run, resources).run()


def as_space(space: SearchSpace | str | Path) -> SearchSpace:
    """``space`` as a :class:`SearchSpace`: itself, the space of a model name, or a space file's.

    Raises:
        TypeError: any other type, naming what is accepted.
    """
    from autosel.space import load_space

    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, Path) or (isinstance(space, str) and (space.endswith((".yaml", ".yml")) or Path(space).is_file())):
        return load_space("", space)
    if isinstance(space, str) and space:
        return load_space(space).replace(model=space)
    raise TypeError(f"space must be a SearchSpace, a model name or the path of a space YAML file, got {type(space).__name__} {space!r:.60}")


def sweep_plan(space: SearchSpace | str | Path, resources: Resources | None = None, source: str | None = None,
               measure: bool = False, run: RunConfig | None = None) -> Plan:
    """What a sweep of ``space`` will do and cost (the dry run): forwards (with ``run``, only for
    the rows its store does not hold yet; it is read, not written), memory and the batch ``auto``
    resolves to, from the offline catalogue; ``measure`` loads the model and times one forward
    when there is any to run (without the weights, a note says the estimate is missing).
    ``source``: where the space came from, for the plan's text."""
    from autosel.denoiser import resolve_dtype
    from autosel.runtime.plan import make_plan, space_source, time_plan
    from autosel.screen.sweep import stored_screen
    from autosel.store import default_storage

    space = as_space(space)
    resources = resources or Resources()
    requested = resources.batch_size
    plan = make_plan(space, source or space_source(space.model, None, space), "sweep", resources.device,
                     None if requested == "auto" else requested)
    if run is not None and space.sigmas is None:  # σ spaces: their timesteps are known once the model loads
        storage = run.storage or default_storage(run.out, make_folder=False)
        todo, _ = stored_screen(space.replace(dtype=resolve_dtype(space.dtype, resources.device)), storage)
        plan.forwards["screen"] = math.ceil(plan.search_images / plan.batch_size) * len(todo)
    if measure and plan.total_forwards:
        time_plan(plan, space, resources.device)
    elif measure:
        plan.notes.append("time: no forward to run, the store holds the whole sweep (no model loads)")
    return plan


def sweep(space: SearchSpace | str | Path, run: RunConfig | None = None, resources: Resources | None = None,
          write_files: bool = True, source: str | None = None) -> SweepResult:
    """Score every candidate of ``space`` (as :func:`search` takes it) alone at every timestep on
    the search split, in this process (rows already in the store are reused); writes
    ``sweep-HxW-DTYPE-KEY.csv`` and ``.png``. Checks names, folders and the store first (one
    line each, before any work), then logs the plan (:func:`sweep_plan`)."""
    from autosel.log import event
    from autosel.runtime.preflight import preflight
    from autosel.screen import run_sweep
    from autosel.store import SweepStore, default_storage

    space = as_space(space)
    run, resources = run or RunConfig(), resources or Resources()
    preflight(model=space.model, task=space.task, dataset=space.dataset, device=resources.device, out=run.out)
    storage = run.storage or default_storage(run.out)
    SweepStore(storage)  # an unusable store fails now, not after the screen
    plan = sweep_plan(space, resources, source, run=run)
    event(plan.text(), **{k: v for k, v in plan.to_dict().items() if k != "notes"})
    return run_sweep(space, out=run.out, storage=run.storage, device=resources.device, batch_size=plan.batch_size,
                     progress=run.progress, write_files=write_files)


def evaluate(
    config: FeatureConfig | dict | str | Path,
    task: str = "correspondence",
    dataset: str = "shapes",
    role: str = "heldout",
    protocol: str = "autosel",
    resources: Resources | None = None,
    progress: bool = True,
    **task_options: object,
) -> TaskResult:
    """Score a feature config (or a YAML file of one) on a proxy task.

    Args:
        config: the feature config: an object, its dict (as in YAML) or a YAML file's path.
        task: ``correspondence``, ``correspondence-trained`` or ``segmentation``.
        dataset: ``shapes``, ``spair:PATH[:split]`` or ``folder:PATH``.
        role: which part of the dataset: ``search`` or ``heldout``.
        protocol: correspondence convention, ``autosel`` or ``dift`` (see :mod:`autosel.protocols`).
        resources: device and batch size (workers do not apply; ``auto``: 8).
        task_options: the task's own options (``pairs``, ``train_images``, ``soft_window``…).

    Raises:
        ConfigError, UnknownActivationError: a bad config; InvalidInputError: a protocol for a
        task that has none; DatasetError: bad data; TypeError: ``config`` of another type.
    """
    return evaluate_many([config], task, dataset, role, protocol, resources, progress, **task_options)[0]


def evaluate_many(
    configs: Sequence[FeatureConfig | dict | str | Path],
    task: str = "correspondence",
    dataset: str = "shapes",
    role: str = "heldout",
    protocol: str = "autosel",
    resources: Resources | None = None,
    progress: bool = True,
    **task_options: object,
) -> list[TaskResult]:
    """Score several feature configs on one proxy task (see :func:`evaluate`), in order. Configs
    of one model share its load, and those with the same extraction settings their denoiser
    forwards: one per image batch and distinct timestep (the scores are those of one
    :func:`evaluate` call each)."""
    from autosel.denoiser import DTYPES, Denoiser, check_device
    from autosel.errors import InvalidInputError
    from autosel.evaluation import evaluate_configs
    from autosel.protocols import get_protocol
    from autosel.tasks import make_task

    resources = resources or Resources(batch_size=8)
    batch_size = 8 if resources.batch_size == "auto" else resources.batch_size
    parsed = [as_config(config) for config in configs]
    check_device(resources.device)
    chosen = get_protocol(protocol)
    options = dict(task_options)
    if get_task(task).kind == "correspondence":
        options["query"] = chosen.query
        parsed = [chosen.apply(config) for config in parsed]
    elif protocol != "autosel":
        raise InvalidInputError(f"'{protocol}' is a correspondence protocol; {task} has none")
    proxy = make_task(task, dataset, role, **options)
    results: dict[int, TaskResult] = {}
    models: dict[tuple[str, str, str | None], list[int]] = {}
    for number, config in enumerate(parsed):
        models.setdefault((config.model.name, config.model.dtype, config.model.revision), []).append(number)
    for (name, dtype, revision), members in models.items():
        denoiser = Denoiser.load(name, dtype=DTYPES[dtype], device=resources.device, revision=revision)
        scored = evaluate_configs(denoiser, [parsed[n] for n in members], proxy, batch_size, progress)
        results.update(zip(members, scored))
    return [results[n] for n in range(len(parsed))]


def as_config(config: FeatureConfig | dict | str | Path) -> FeatureConfig:
    """``config`` as a :class:`FeatureConfig`: itself, from its dict, or from a YAML file.

    Raises:
        TypeError: ``config`` is none of these.
    """
    if isinstance(config, dict):
        return FeatureConfig.from_dict(config, source="config")
    if isinstance(config, (str, Path)):
        return FeatureConfig.from_yaml(config)
    if not isinstance(config, FeatureConfig):
        raise TypeError(f"config must be a FeatureConfig, a dict of one or the path of a YAML file, got {type(config).__name__}")
    return config
