"""``autosel sweep`` and ``search``: screening and the combination search."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from autosel.cli.app import app
from autosel.cli.options import (
    CacheDirOpt,
    DeviceOpt,
    DryRunOpt,
    DtypeOpt,
    ImageSizeOpt,
    NoProgressOpt,
    OutFolderOpt,
    PairsOpt,
    PairsPerCategoryOpt,
    SpaceDatasetOpt,
    SpaceFileOpt,
    SpaceModelOpt,
    SpaceTaskOpt,
    TestImagesOpt,
    TrainImagesOpt,
    parse_timesteps,
    peak_memory_text,
    with_overrides,
)
from autosel.output import OutputFormat, print_records


@app.command("sweep")
def sweep_command(
    model: SpaceModelOpt = None,
    task: SpaceTaskOpt = None,
    dataset: SpaceDatasetOpt = None,
    timesteps: Annotated[
        Optional[str], typer.Option("--timesteps", help="Comma-separated grid, e.g. 10,50,100; default: the space file's.")
    ] = None,
    include: Annotated[Optional[list[str]], typer.Option("--include", help="Candidate id glob (repeatable); replaces the space's.")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option("--exclude", help="Id glob to leave out (repeatable); replaces the space's.")] = None,
    space_file: SpaceFileOpt = None,
    out: OutFolderOpt = Path("runs"),
    storage: Annotated[
        Optional[str], typer.Option("--storage", help="SQLAlchemy URL; default sqlite:///OUT/autosel.db (shared with search).")
    ] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="How many of the best to print.")] = 10,
    image_size: ImageSizeOpt = None,
    dtype: DtypeOpt = None,
    pairs: PairsOpt = None,
    pairs_per_category: PairsPerCategoryOpt = None,
    train_images: TrainImagesOpt = None,
    test_images: TestImagesOpt = None,
    batch_size: Annotated[str, typer.Option("--batch-size", help="Images per denoiser forward, or auto: the largest that fits the device's free memory.")] = "auto",
    device: DeviceOpt = None,
    dry_run: DryRunOpt = False,
    no_progress: NoProgressOpt = False,
) -> None:
    """Score every candidate activation alone at every timestep on the search split (screening).

    One denoiser forward per image batch and timestep, whatever the number of candidates.
    Writes OUT/MODEL/TASK/sweep-HxW-DTYPE-KEY.csv and .png (KEY: the
    dataset and proxy settings), stores rows in the SQL store (a rerun
    reuses them) and prints the best. The plan (forwards, memory, time) is printed first;
    --dry-run prints only the plan and writes nothing.

    Examples:

    * `autosel sweep --model tiny --timesteps 10,50,150 --include 'up-*'`
    * `autosel sweep --model ./my-pipeline --image-size 256 --pairs 20 --dtype float16 --dry-run`
    """
    from autosel import api
    from autosel.run_config import Resources, RunConfig
    from autosel.runtime.plan import space_source

    space = space_for(model, space_file)
    candidates = None
    if include or exclude:
        candidates = {**space.candidates.model_dump(), "include": include or space.candidates.include,
                      "exclude": exclude or space.candidates.exclude}
    space = space.replace(task=task, dataset=dataset, timesteps=parse_timesteps(timesteps), candidates=candidates)
    space = with_overrides(space, image_size, dtype, pairs, pairs_per_category, train_images, test_images)
    resources = Resources(device=device, batch_size=parse_batch_size(batch_size))
    source = space_source(space.model if model is None else model, space_file, space)
    if dry_run:
        print_plan(api.sweep_plan(space, resources, source, measure=True, run=RunConfig(out=out, storage=storage)))
        return
    result = api.sweep(space, RunConfig(out=out, storage=storage, progress=not no_progress), resources, source=source)
    best = result.top(top)
    records = [
        {"rank": n + 1, "id": row.id, "timestep": int(row.timestep), "channels": int(row.channels), "value": f"{100 * row.value:.1f}"}
        for n, row in enumerate(best.itertuples())
    ]
    title = f"Top {len(records)} of {result.computed + result.reused} (id, t) by {result.metric}"
    print_records(records, OutputFormat.table, [("rank", "#"), ("id", "id"), ("timestep", "t"), ("channels", "C"), ("value", "%")], title=title)
    typer.echo(
        f"{result.computed} (id, t) scored now with {result.forwards} denoiser forwards, {result.reused} reused from the store; "
        f"peak memory {peak_memory_text()}; wrote {result.csv} and {result.heatmap}"
    )


@app.command("search")
def search_command(
    model: SpaceModelOpt = None,
    task: SpaceTaskOpt = None,
    dataset: SpaceDatasetOpt = None,
    space_file: SpaceFileOpt = None,
    trials: Annotated[Optional[int], typer.Option("--trials", "-n", help="COMPLETE trials the study should hold in total; default: the space's.")] = None,
    workers: Annotated[
        Optional[int], typer.Option("--workers", "-w", min=0, help="Ray workers (model replicas); default: GPUs, 1 on a CPU box; 0: in this process.")
    ] = None,
    storage: Annotated[Optional[str], typer.Option("--storage", help="SQLAlchemy URL; default sqlite:///OUT/autosel.db.")] = None,
    study: Annotated[Optional[str], typer.Option("--study", help="Study name; default MODEL-TASK.")] = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Join this Ray cluster instead of starting one.")] = None,
    out: OutFolderOpt = Path("runs"),
    seed: Annotated[Optional[int], typer.Option("--seed", help="Sampler seed; default: the space's.")] = None,
    strategy: Annotated[
        Optional[str], typer.Option("--strategy", help="greedy-tpe (greedy forward selection, then TPE), tpe, random, greedy or exhaustive; default: the space's (greedy-tpe).")
    ] = None,
    cache_dir: CacheDirOpt = None,
    cache_memory: Annotated[str, typer.Option("--cache-memory", help="RAM for cached activations per worker; beyond it they are memory-mapped. A screen whose captures fit it keeps them, and the cache stage runs no forward.")] = "4GB",
    image_size: ImageSizeOpt = None,
    dtype: DtypeOpt = None,
    pairs: PairsOpt = None,
    pairs_per_category: PairsPerCategoryOpt = None,
    train_images: TrainImagesOpt = None,
    test_images: TestImagesOpt = None,
    batch_size: Annotated[str, typer.Option("--batch-size", help="Images per denoiser forward, or auto: the largest that fits the device's free memory.")] = "auto",
    device: DeviceOpt = None,
    confirm_task: Annotated[
        Optional[str], typer.Option("--confirm-task", help="Score the confirmations with this task, e.g. correspondence-trained (gdf's trained head).")
    ] = None,
    confirm_dataset: Annotated[
        Optional[str], typer.Option("--confirm-dataset", help="Score the confirmations on this dataset, e.g. a few labelled pairs "
                                    "after a label-free search on images:PATH (spair:PATH --pairs-per-category 2); default: the search's.")
    ] = None,
    allow_same_split: Annotated[
        bool, typer.Option("--allow-same-split", help="Accept a dataset split pinned for both roles (spair:PATH:test); scores are labelled not held-out.")
    ] = False,
    dry_run: DryRunOpt = False,
    no_progress: NoProgressOpt = False,
) -> None:
    """Find the best combination of activations and timesteps; write OUT/MODEL/TASK/best.yaml.

    Stages: screen every candidate (reusing a stored sweep), cache the best, search
    combinations with Optuna (score up; channels and denoiser cost down; channel budget as a
    constraint), confirm the top configs and the presets on the held-out split. Rerunning
    continues the study; several drivers can share one with --storage postgresql://….

    Examples:

    * `autosel search --model tiny`
    * `autosel search --model sdxl --dataset spair:~/SPair-71k --storage postgresql://host/db`
    * `autosel search --model sd15 --dataset images:~/photos --confirm-dataset spair:~/SPair-71k --pairs-per-category 2`
    """
    from autosel.errors import InvalidInputError
    from autosel.log import event
    from autosel.optimise import check_strategy
    from autosel.pipeline import Search
    from autosel.run_config import Resources, RunConfig
    from autosel.runtime.plan import space_source

    if trials is not None and trials < 1:
        raise InvalidInputError(f"--trials must be at least 1, got {trials}")
    if strategy is not None:
        check_strategy(strategy)
    space = space_for(model, space_file).replace(task=task, dataset=dataset, seed=seed, allow_same_split=allow_same_split or None)
    space = with_overrides(space, image_size, dtype, pairs, pairs_per_category, train_images, test_images)
    changes = {"trials": trials, "strategy": strategy, "confirm_task": confirm_task, "confirm_dataset": confirm_dataset}
    space = space.replace(search={**space.search.model_dump(), **{k: v for k, v in changes.items() if v is not None}})
    run = RunConfig(out=out, storage=storage, study=study, cache_dir=cache_dir, cache_memory=cache_memory,
                    progress=not no_progress)
    resources = Resources(workers=workers, device=device, batch_size=parse_batch_size(batch_size), ray_address=ray_address)
    search = Search(space, run, resources)
    source = space_source(space.model if model is None else model, space_file, space)
    if dry_run:
        print_plan(search.plan(measure=True, source=source))
        return
    search.check()  # bad names, folders or store fail here in one line, before any work
    plan = search.plan(source=source)
    plan.notes.append("time: measured with --dry-run only (the driver loads no model; the workers do)")
    event(plan.text(), **{k: v for k, v in plan.to_dict().items() if k != "notes"})
    outcome = search.run()
    heldout = "held-out" if outcome.heldout_label == "heldout" else "NOT held-out"
    records = [
        {"config": c.name, "activations": ", ".join(a.label for a in c.config.activations),
         "channels": c.channels, "search": "–" if c.search is None else f"{100 * c.search:.1f}", "heldout": f"{100 * c.heldout:.1f}"}
        for c in outcome.confirmed
    ]
    metric = outcome.sweep.metric
    title = f"{space.model} · {space.task} · {metric} ({heldout}: {space.dataset})"
    confirm_task, confirm_dataset = space.confirmation()
    if (confirm_task, confirm_dataset) != (space.task, space.dataset):  # e.g. label-free search, labelled confirmation
        title = f"{space.model} · {space.task} · {metric} on {space.dataset}; {heldout}: {confirm_task} on {confirm_dataset}"
    print_records(
        records, OutputFormat.table,
        [("config", "config"), ("activations", "activations"), ("channels", "C"), ("search", "search %*"), ("heldout", f"{heldout} %")],
        title=title,
    )
    typer.echo("* search split, two measurements: trials on the cached maps (pooled and projected), the best single "
               "activation on full maps in the sweep; held-out: every row through the real extractor at full channels")
    stats = outcome.stats
    typer.echo(
        f"study {outcome.study}: {stats.evaluated} trials evaluated now, {stats.duplicates} duplicates copied, "
        f"{stats.retried} retried; best config: {outcome.files[0]}"
    )


def space_for(model: str | None, path: Path | None):
    """The search space of ``model`` (``--space`` alone implies its model; no model: tiny)."""
    from autosel.config import ConfigError
    from autosel.space import load_space, same_model

    if path is None:
        return load_space(model or "tiny").replace(model=model or "tiny")
    space = load_space(model or "", path)
    if model is not None and not same_model(space.model, model):
        raise ConfigError(f"{path}: this space is for model '{space.model}', not '{model}'")
    return space  # the file's spelling of the model: the same store keys and folders every run


def parse_batch_size(text: str) -> str | int:
    """``--batch-size``: ``auto`` or a positive whole number."""
    from autosel.errors import InvalidInputError

    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise InvalidInputError(f"--batch-size must be auto or a whole number of at least 1, got '{text}'")
    return int(text)


def print_plan(plan) -> None:
    """The dry run's result: the plan as text on stdout, or as one JSON event with --log-json."""
    from autosel.log import event, json_lines

    if json_lines():
        event(plan.text(), **{k: v for k, v in plan.to_dict().items() if k != "notes"}, notes=plan.notes)
    else:
        typer.echo(plan.text())
