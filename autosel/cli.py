"""The ``autosel`` command line: thin commands over the library.

Every command parses its options, calls the library and prints through ``autosel.output``.
Errors from user input (:class:`autosel.errors.AutoselError`) become one line on stderr and a
non-zero exit code; set ``AUTOSEL_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from autosel.errors import AutoselError
from autosel.output import OutputFormat, print_records

app = typer.Typer(
    name="autosel",
    help="Find which diffusion-model activations and timesteps make the best features.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main_options(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors (files are still written).")] = False,
    log_json: Annotated[bool, typer.Option("--log-json", help="Stage messages as JSON lines on stderr, no progress bars.")] = False,
) -> None:
    """Find which diffusion-model activations and timesteps make the best features.

    Start with `autosel search --model tiny`; every command has --help with an example.
    """
    from autosel.log import configure

    configure(quiet=quiet, json_lines=log_json)


ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Registry name (see `autosel models`), hub id (owner/name) or local diffusers pipeline folder.",
    ),
]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.", case_sensitive=False)]
ImageSizeOpt = Annotated[
    Optional[str],
    typer.Option("--image-size", help="Image size in pixels: N (square) or HxW, e.g. 768x512. Default: native."),
]
DtypeOpt = Annotated[
    Optional[str],
    typer.Option("--dtype", help="Denoiser dtype: float32, float16 or bfloat16. Default: bfloat16 (float16) on CUDA, float32 on a CPU."),
]
SpaceModelOpt = Annotated[
    Optional[str],
    typer.Option(
        "--model", "-m",
        help="Registry name, hub id or local pipeline folder; default: the --space file's model, else tiny.",
    ),
]
PairsOpt = Annotated[Optional[int], typer.Option("--pairs", min=1, help="Correspondence proxy: pairs (overrides the space).")]
PairsPerCategoryOpt = Annotated[
    Optional[int], typer.Option("--pairs-per-category", min=1, help="Correspondence proxy: balanced subset, N per category.")
]
TrainImagesOpt = Annotated[Optional[int], typer.Option("--train-images", min=1, help="Segmentation proxy: labelled images.")]
TestImagesOpt = Annotated[Optional[int], typer.Option("--test-images", min=1, help="Segmentation proxy: scored images.")]


@app.command("models")
def models_command(output_format: FormatOpt = OutputFormat.table) -> None:
    """List the registry's short names with hub id, family, native resolution and default prompt.

    Example: autosel models --format json
    """
    from autosel.models import REGISTRY

    records = [
        {
            "name": spec.name,
            "hub_id": spec.hub_id,
            "family": spec.family,
            "resolution": spec.resolution,
            "prompt": spec.prompt,
            "description": spec.description,
        }
        for spec in REGISTRY.values()
    ]
    columns = [
        ("name", "name"),
        ("hub_id", "hub id"),
        ("family", "family"),
        ("resolution", "px"),
        ("prompt", "prompt"),
        ("description", "description"),
    ]
    print_records(records, output_format, columns, title="Models (--model also takes a hub id or a folder)")


@app.command("catalog")
def catalog_command(
    model: ModelOpt = "tiny",
    image_size: ImageSizeOpt = None,
    filters: Annotated[
        Optional[list[str]],
        typer.Option("--filter", help="Keep ids matching this glob (repeatable), e.g. 'up-level1-*-cross-q'."),
    ] = None,
    output_format: FormatOpt = OutputFormat.table,
) -> None:
    """List every activation point of a model with its shape and depth (no weights needed).

    Examples: autosel catalog --model sdxl --filter 'up-level0-*-out' ;
    autosel catalog --model sd15 --image-size 768x512 --format json
    """
    from autosel.catalog import list_activations, select_activations

    points = list_activations(model, _parse_image_size(image_size))
    if filters:
        points = select_activations(points, filters, model_name=model)
    records = [point.to_dict() for point in points]
    columns = [
        ("id", "id"),
        ("kind", "kind"),
        ("channels", "C"),
        ("height", "H"),
        ("width", "W"),
        ("depth", "depth"),
    ]
    print_records(records, output_format, columns, title=f"{len(records)} activation points of {model}")


@app.command("extract")
def extract_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="Feature config YAML.")],
    images: Annotated[
        list[str], typer.Option("--images", "-i", help="Image file or folder (searched recursively); repeatable.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .safetensors file.")],
    aggregate: Annotated[
        bool, typer.Option("--aggregate", help="Write one aggregated map per image instead of one tensor per id.")
    ] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per denoiser batch.")] = 8,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:1…; default: CUDA if available.")] = None,
    dtype: DtypeOpt = None,
) -> None:
    """Extract the features a config names from images into a safetensors file.

    Keys are IMAGE/ID (C×H×W) or, with --aggregate, IMAGE; the config is stored in the
    file's metadata. Unreadable images are listed in a warning and skipped.

    Example: autosel extract --config results/presets/meng-practical-sd15.yaml --images photos/ --out feats.safetensors
    """
    from autosel.extract import FeatureExtractor
    from autosel.writer import extract_to_file

    from autosel.denoiser import check_device
    from autosel.search.preflight import probe_output_file

    feature_config = _feature_config(config)
    check_device(device)
    probe_output_file(out)
    extractor = FeatureExtractor(_with_dtype(feature_config, dtype), device=device, batch_size=batch_size)
    report = extract_to_file(extractor, images, out, aggregate=aggregate)
    for name, reason in report.skipped:
        typer.echo(f"warning: skipped {name}: {reason}", err=True)
    typer.echo(f"wrote {report.tensors} tensors for {report.images} images to {out}")


@app.command("evaluate")
def evaluate_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="Feature config YAML.")],
    task: Annotated[
        str, typer.Option("--task", "-t", help="Proxy task: correspondence, correspondence-trained (gdf's trained head) or segmentation.")
    ] = "correspondence",
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="shapes, spair:PATH[:trn|val|test] or folder:PATH.")
    ] = "shapes",
    role: Annotated[str, typer.Option("--role", help="Which part of the dataset: search or heldout.")] = "heldout",
    pairs: Annotated[Optional[int], typer.Option("--max-pairs", min=1, help="Correspondence: at most N pairs (shapes: 100).")] = None,
    pairs_per_category: Annotated[
        Optional[int], typer.Option("--pairs-per-category", min=1, help="Correspondence: balanced subset, N per category.")
    ] = None,
    soft_window: Annotated[
        Optional[int], typer.Option("--soft-window", min=0, help="Correspondence: soft-argmax window radius (0: argmax).")
    ] = None,
    train_images: Annotated[
        Optional[int], typer.Option("--train-images", min=1, help="Segmentation: labelled images to train on.")
    ] = None,
    test_images: Annotated[Optional[int], typer.Option("--test-images", min=1, help="Segmentation: at most N scored images.")] = None,
    train_pairs: Annotated[
        Optional[int], typer.Option("--train-pairs", min=1, help="correspondence-trained: training pairs (shapes: 200; SPair: all of trn).")
    ] = None,
    protocol: Annotated[
        str, typer.Option("--protocol", help="Correspondence convention: autosel (per-activation L2, bilinear query) or dift (raw, one normalisation, rounded-cell query).")
    ] = "autosel",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per denoiser batch.")] = 8,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:1…; default: CUDA if available.")] = None,
    dtype: DtypeOpt = None,
    output_format: FormatOpt = OutputFormat.table,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Score a feature config on a proxy task: every PCK variant, or mIoU with per-class IoU.

    Correspondence scores carry their protocol: `autosel` (default; each activation L2-normalised,
    bilinear query) or `dift` (raw activations, one normalisation, the query at the keypoint's
    rounded cell, as DIFT and gdf compute it).

    `--task correspondence-trained` is the seed codebase's protocol: a 3×3 convolution head trained
    on another split's pairs (shapes train, SPair trn) with gdf's loss and defaults, then nearest
    neighbours on its output.

    Examples: autosel evaluate --config results/presets/meng-practical-sd15.yaml --dataset spair:~/SPair-71k:test ;
    autosel evaluate --config best.yaml --task segmentation --dataset folder:horse21/ --train-images 30
    """
    from autosel.evaluate import evaluate_config
    from autosel.extract import FeatureExtractor
    from autosel.output import print_document
    from autosel.tasks import make_task

    feature_config = _feature_config(config)
    size = feature_config.extraction.image_size
    options = {
        "pairs": pairs, "pairs_per_category": pairs_per_category, "soft_window": soft_window,
        "train_images": train_images, "test_images": test_images,
        "image_size": size if isinstance(size, int) else 64,
    }
    from autosel.denoiser import check_device
    from autosel.protocols import get_protocol

    check_device(device)
    chosen = get_protocol(protocol)
    if task.startswith("correspondence"):
        options["query"] = chosen.query
        feature_config = chosen.apply(feature_config)
        if task == "correspondence-trained":
            options["train_pairs"] = train_pairs
    elif protocol != "autosel":
        raise typer.BadParameter(f"'{protocol}' is a correspondence protocol; {task} has none", param_hint="--protocol")
    proxy = make_task(task, dataset, role, **options)
    extractor = FeatureExtractor(_with_dtype(feature_config, dtype), device=device, batch_size=batch_size)
    result = evaluate_config(extractor, proxy, progress=not quiet)
    if output_format is not OutputFormat.table:
        print_document({**result.to_dict(), **({"protocol": protocol, "protocol_description": chosen.description}
                                               if task.startswith("correspondence") else {})}, output_format)
        return
    records = [
        {"metric": name, "value": f"{100 * value:.1f}", "meaning": result.descriptions.get(name, "")}
        for name, value in result.metrics.items()
    ]
    title = f"{task} on {dataset} ({role}): {result.n_items} {result.unit}; primary {result.primary} = {100 * result.value:.1f}"
    if task.startswith("correspondence"):
        title += f"; protocol {protocol}"
    print_records(records, output_format, [("metric", "metric"), ("value", "%"), ("meaning", "meaning")], title=title)


@app.command("inspect")
def inspect_command(
    model: ModelOpt = "tiny",
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="shapes, spair:PATH[:split] or folder:PATH.")] = "shapes",
    timesteps: Annotated[str, typer.Option("--timesteps", help="Comma-separated timesteps (0–999 scale).")] = "50,260",
    ids: Annotated[
        Optional[list[str]], typer.Option("--ids", help="Id or glob (repeatable); default every id but attention maps.")
    ] = None,
    factor: Annotated[
        float, typer.Option("--factor", min=1.0, help="Massive: mean |value| over image tokens > FACTOR × the median channel's.")
    ] = 100.0,
    images: Annotated[int, typer.Option("--images", min=1, help="How many images of the dataset to run.")] = 8,
    image_size: ImageSizeOpt = None,
    dtype: DtypeOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per denoiser forward.")] = 8,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:1…; default: CUDA if available.")] = None,
    all_rows: Annotated[bool, typer.Option("--all", help="Table: list every (id, t), not only those with findings.")] = False,
    output_format: FormatOpt = OutputFormat.table,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Find massive activations: channels whose mean |value| over the image tokens is more than
    FACTOR (default 100) times the median channel's, per id and timestep, with their share of
    the feature's energy and NaN/Inf counts. `post: drop-massive` in a feature config zeroes them.

    Examples: autosel inspect --model flux-dev --timesteps 260 --ids 'vit-block*-norm-in' ;
    autosel inspect --model tiny-sd3-random --format json
    """
    from autosel.inspection import inspect_model

    from autosel.denoiser import resolve_dtype

    dtype = resolve_dtype(_with_dtype_check(dtype), device)  # checks --device too
    rows = inspect_model(
        model, dataset=dataset, timesteps=_parse_timesteps(timesteps) or [], ids=ids, factor=factor, images=images,
        image_size=_parse_image_size(image_size), dtype=dtype, device=device, batch_size=batch_size,
        progress=not quiet,
    )
    if output_format is not OutputFormat.table:
        print_records([row.to_dict() for row in rows], output_format, [])
        return
    shown = [row for row in rows if all_rows or row.massive_channels or row.nan or row.inf]
    records = [
        {
            "id": row.id, "timestep": row.timestep, "channels": row.channels,
            "massive": ", ".join(f"{c} ({r:g}x)" for c, r in zip(row.massive_channels[:8], row.ratios)) or "-",
            "energy": f"{100 * row.energy_share:.1f}", "nan_inf": f"{row.nan}/{row.inf}",
        }
        for row in shown
    ]
    flagged = sum(1 for row in rows if row.massive_channels)
    title = (f"{flagged} of {len(rows)} (id, t) have massive channels (> {factor:g}x the median channel's mean |value|)"
             + ("" if all_rows else "; --all lists every row"))
    columns = [("id", "id"), ("timestep", "t"), ("channels", "C"), ("massive", "massive channels (x median)"),
               ("energy", "energy %"), ("nan_inf", "NaN/Inf")]
    print_records(records, OutputFormat.table, columns, title=title)


@app.command("sweep")
def sweep_command(
    model: SpaceModelOpt = None,
    task: Annotated[Optional[str], typer.Option("--task", "-t", help="Proxy task; default: the space file's.")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="Dataset spec; default: the space file's.")] = None,
    timesteps: Annotated[
        Optional[str], typer.Option("--timesteps", help="Comma-separated grid, e.g. 10,50,100; default: the space file's.")
    ] = None,
    include: Annotated[Optional[list[str]], typer.Option("--include", help="Candidate id glob (repeatable); replaces the space's.")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option("--exclude", help="Id glob to leave out (repeatable); replaces the space's.")] = None,
    space_file: Annotated[Optional[Path], typer.Option("--space", help="Search space YAML; default search_spaces/<model>.yaml.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("results"),
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
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per denoiser forward.")] = 16,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:1…; default: CUDA if available.")] = None,
    dry_run: DryRunOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Score every candidate activation alone at every timestep on the search split (screening).

    One denoiser forward per image batch and timestep, whatever the number of candidates.
    Writes OUT/MODEL/TASK/sweep.csv and sweep.png, stores rows in the SQL store (a rerun
    reuses them) and prints the best. The plan (forwards, memory, time) is printed first;
    --dry-run prints only the plan and writes nothing.

    Examples: autosel sweep --model tiny --timesteps 10,50,150 --include 'up-*' ;
    autosel sweep --model ./my-pipeline --image-size 256 --pairs 20 --dtype float16 --dry-run
    """
    from autosel.search import run_sweep
    from autosel.search.sweep import model_run

    space = _space_for(model, space_file)
    candidates = None
    if include or exclude:
        candidates = {**space.candidates.model_dump(), "include": include or space.candidates.include,
                      "exclude": exclude or space.candidates.exclude}
    space = space.replace(task=task, dataset=dataset, timesteps=_parse_timesteps(timesteps), candidates=candidates)
    space = _with_overrides(space, image_size, dtype, pairs, pairs_per_category, train_images, test_images)
    if not dry_run:  # bad names, folders or store fail in one line, before the plan and any work
        from autosel.search.preflight import preflight
        from autosel.search.store import SweepStore, default_storage

        preflight(model=space.model, task=space.task, dataset=space.dataset, device=device, out=out)
        SweepStore(storage or default_storage(out))
    plan = _show_plan(space, space_file, model, "sweep", device, batch_size, None, dry_run)
    run = model_run(space, device=device, batch_size=batch_size)
    _time_plan(plan, run, space, dry_run)
    if dry_run:
        return
    result = run_sweep(space, out=out, storage=storage, device=device, batch_size=batch_size, progress=not quiet, run=run)
    best = result.top(top)
    records = [
        {"rank": n + 1, "id": row.id, "timestep": int(row.timestep), "channels": int(row.channels), "value": f"{100 * row.value:.1f}"}
        for n, row in enumerate(best.itertuples())
    ]
    title = f"Top {len(records)} of {result.computed + result.reused} (id, t) by {result.metric}"
    print_records(records, OutputFormat.table, [("rank", "#"), ("id", "id"), ("timestep", "t"), ("channels", "C"), ("value", "%")], title=title)
    typer.echo(
        f"{result.computed} (id, t) scored now with {result.forwards} denoiser forwards, {result.reused} reused from the store; "
        f"peak memory {_peak_memory_text()}; wrote {result.csv} and {result.heatmap}"
    )


@app.command("search")
def search_command(
    model: SpaceModelOpt = None,
    task: Annotated[Optional[str], typer.Option("--task", "-t", help="Proxy task; default: the space file's.")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="Dataset spec; default: the space file's.")] = None,
    space_file: Annotated[Optional[Path], typer.Option("--space", help="Search space YAML; default search_spaces/<model>.yaml.")] = None,
    trials: Annotated[Optional[int], typer.Option("--trials", "-n", help="COMPLETE trials the study should hold in total; default: the space's.")] = None,
    workers: Annotated[
        Optional[int], typer.Option("--workers", "-w", min=0, help="Ray workers (model replicas); default: GPUs, 1 on a CPU box; 0: in this process.")
    ] = None,
    storage: Annotated[Optional[str], typer.Option("--storage", help="SQLAlchemy URL; default sqlite:///OUT/autosel.db.")] = None,
    study: Annotated[Optional[str], typer.Option("--study", help="Study name; default MODEL-TASK.")] = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Join this Ray cluster instead of starting one.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("results"),
    seed: Annotated[Optional[int], typer.Option("--seed", help="Sampler seed; default: the space's.")] = None,
    strategy: Annotated[
        str, typer.Option("--strategy", help="greedy-tpe (greedy forward selection, then TPE), tpe, random, greedy or exhaustive.")
    ] = "greedy-tpe",
    cache_dir: CacheDirOpt = None,
    cache_memory: Annotated[str, typer.Option("--cache-memory", help="RAM for cached activations per worker; beyond it they are memory-mapped.")] = "4GB",
    image_size: ImageSizeOpt = None,
    dtype: DtypeOpt = None,
    pairs: PairsOpt = None,
    pairs_per_category: PairsPerCategoryOpt = None,
    train_images: TrainImagesOpt = None,
    test_images: TestImagesOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per denoiser forward.")] = 16,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:1…; default: CUDA if available.")] = None,
    confirm_task: Annotated[
        Optional[str], typer.Option("--confirm-task", help="Score the confirmations with this task, e.g. correspondence-trained (gdf's trained head).")
    ] = None,
    allow_same_split: Annotated[
        bool, typer.Option("--allow-same-split", help="Accept a dataset split pinned for both roles (spair:PATH:test); scores are labelled not held-out.")
    ] = False,
    dry_run: DryRunOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Find the best combination of activations and timesteps; write OUT/MODEL/TASK/best.yaml.

    Stages: screen every candidate (reusing a stored sweep), cache the best, search
    combinations with Optuna (score up; channels and denoiser cost down; channel budget as a
    constraint), confirm the top configs and the presets on the held-out split. Rerunning
    continues the study; several drivers can share one with --storage postgresql://….

    Example: autosel search --model tiny ; autosel search --model sdxl --dataset spair:~/SPair-71k --storage postgresql://host/db
    """
    from autosel.search.run import run_search

    space = _space_for(model, space_file).replace(task=task, dataset=dataset)
    space = _with_overrides(space, image_size, dtype, pairs, pairs_per_category, train_images, test_images)
    if not dry_run:  # bad names, folders or store fail in one line, before the plan and any work
        from autosel.search.cache import default_cache_dir
        from autosel.search.preflight import preflight
        from autosel.search.store import default_storage
        from autosel.search.study import open_storage, quiet_optuna

        preflight(model=space.model, task=space.task, dataset=space.dataset, device=device, out=out,
                  cache_dir=cache_dir or default_cache_dir(), strategy=strategy, both_roles=True,
                  allow_same_split=allow_same_split)
        quiet_optuna()
        open_storage(storage or default_storage(out))
    plan = _show_plan(space, space_file, model, "search", device, batch_size, workers, dry_run)
    if dry_run:
        from autosel.search.sweep import model_run

        _time_plan(plan, model_run(space, device=device, batch_size=batch_size), space, dry_run)
        return
    outcome = run_search(
        space, trials=trials, workers=workers, storage=storage, study_name=study, ray_address=ray_address, out=out,
        seed=seed, strategy=strategy, cache_dir=cache_dir, cache_memory=cache_memory, device=device,
        batch_size=batch_size, progress=not quiet, allow_same_split=allow_same_split, confirm_task=confirm_task,
    )
    heldout = "held-out" if outcome.heldout_label == "heldout" else "NOT held-out"
    records = [
        {"config": c.name, "activations": ", ".join(a.label for a in c.config.activations),
         "channels": c.channels, "search": "–" if c.search is None else f"{100 * c.search:.1f}", "heldout": f"{100 * c.heldout:.1f}"}
        for c in outcome.confirmed
    ]
    metric = outcome.sweep.metric
    print_records(
        records, OutputFormat.table,
        [("config", "config"), ("activations", "activations"), ("channels", "C"), ("search", "search %*"), ("heldout", f"{heldout} %")],
        title=f"{space.model} · {space.task} · {metric} ({heldout}: {space.dataset})",
    )
    typer.echo("* search split, two measurements: trials on the cached maps (pooled and projected), the best single "
               "activation on full maps in the sweep; held-out: every row through the real extractor at full channels")
    stats = outcome.stats
    typer.echo(
        f"study {outcome.study}: {stats.evaluated} trials evaluated now, {stats.duplicates} duplicates copied, "
        f"{stats.retried} retried; best config: {outcome.files[0]}"
    )


StorageOpt = Annotated[
    Optional[str], typer.Option("--storage", help="SQLAlchemy URL of the store; default sqlite:///results/autosel.db.")
]


@app.command("studies")
def studies_command(storage: StorageOpt = None, output_format: FormatOpt = OutputFormat.table) -> None:
    """List the studies in a store: model, task, trials complete/running/failed, best held-out score.

    Example: autosel studies --storage postgresql://user@host/db
    """
    from autosel.report import study_summaries

    records = study_summaries(_existing_storage(storage))
    for record in records:
        best = record["best_heldout"]
        record["best"] = "–" if best is None else f"{100 * best:.1f}"
    columns = [("study", "study"), ("model", "model"), ("task", "task"), ("complete", "complete"), ("running", "running"),
               ("failed", "failed"), ("best", "best held-out %"), ("last_update", "last update (UTC)")]
    print_records(records, output_format, columns, title=f"{len(records)} studies")


@app.command("report")
def report_command(
    study: Annotated[str, typer.Option("--study", help="Study name (see `autosel studies`).")],
    storage: StorageOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder; default results/reports/STUDY.")] = None,
    html: Annotated[bool, typer.Option("--html", help="Also write one self-contained report.html.")] = False,
) -> None:
    """Write a report of a study: screen heatmap, history, Pareto front, importances, best vs presets.

    Markdown + PNGs (matplotlib, no browser or network needed) and trials.csv.

    Example: autosel report --study tiny-correspondence --html
    """
    from autosel.report import write_report

    report = write_report(study, _existing_storage(storage), out or Path("results") / "reports" / study, html=html)
    for path in report.files:
        typer.echo(f"wrote {path}")


@app.command("dashboard")
def dashboard_command(
    storage: StorageOpt = None,
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535, help="Port on 127.0.0.1.")] = 8080,
) -> None:
    """Serve optuna-dashboard on 127.0.0.1 for the live view of the studies in a store (Ctrl-C stops).

    Works on a SQLite store while a search writes it (WAL mode; readers and the writer wait
    for each other's locks).

    Example: autosel dashboard --storage sqlite:///results/autosel.db --port 8080
    """
    from optuna_dashboard import run_server

    from autosel.config import mask_password
    from autosel.search.study import open_storage, quiet_optuna

    url = _existing_storage(storage)
    _check_port_free(port)
    quiet_optuna()
    rdb = open_storage(url)
    typer.echo(f"optuna-dashboard for {mask_password(url)} on http://127.0.0.1:{port}/ (Ctrl-C stops)")
    try:
        run_server(rdb, host="127.0.0.1", port=port)
    except KeyboardInterrupt:
        pass


def _check_port_free(port: int) -> None:
    """Refuse a port another program listens on, before anything starts."""
    import socket

    from autosel.errors import InvalidInputError

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            reason = "already in use" if error.errno in (98, 48) else (error.strerror or str(error)).lower()
            raise InvalidInputError(f"port {port} on 127.0.0.1 is {reason}: choose another with --port") from None


def _feature_config(path: Path):
    """The feature config at ``path``, its ids checked against the model's offline catalogue
    before any weights load (an unknown id names the file, the closest ids and the listing)."""
    from autosel.catalog import list_activations
    from autosel.config import FeatureConfig
    from autosel.errors import UnknownActivationError

    config = FeatureConfig.from_yaml(path)
    try:
        config.check_ids(point.id for point in list_activations(config.model.name, config.extraction.image_size))
    except UnknownActivationError as error:
        raise UnknownActivationError(f"{path}: {error}") from None
    return config


def _existing_storage(storage: str | None) -> str:
    """``storage``, or the default SQLite file, which must exist (reading creates nothing)."""
    from autosel.errors import InvalidInputError

    if storage is not None:
        if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).is_file():
            raise InvalidInputError(f"no store at {storage}: run `autosel search` first, or pass --storage")
        return storage
    path = Path("results") / "autosel.db"
    if not path.is_file():
        raise InvalidInputError(f"no store at {path}: run `autosel search` first, or pass --storage")
    return f"sqlite:///{path.resolve()}"


def _space_for(model: str | None, path: Path | None):
    """The search space of ``model`` (``--space`` alone implies its model; no model: tiny)."""
    from autosel.config import ConfigError
    from autosel.search import load_space
    from autosel.search.space import same_model

    if path is None:
        return load_space(model or "tiny").replace(model=model or "tiny")
    space = load_space(model or "", path)
    if model is not None and not same_model(space.model, model):
        raise ConfigError(f"{path}: this space is for model '{space.model}', not '{model}'")
    return space  # the file's spelling of the model: the same store keys and folders every run


DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print the plan (forwards, memory, time from one warm-up forward) and stop: writes nothing.")
]


def _show_plan(space, space_file, model, stage, device, batch_size, workers, dry_run):
    """Print the plan before any work: on stdout for --dry-run (it is the result), else as a stage message."""
    from autosel.log import event
    from autosel.search.plan import make_plan, space_source
    from autosel.search.run import presets_for

    source = space_source(space.model if model is None else model, space_file, space)
    plan = make_plan(space, source, stage, device, batch_size, workers, presets_for(space.model) if stage == "search" else ())
    if stage == "search" and not dry_run:
        plan.notes.append("time: measured with --dry-run only (the driver loads no model; the workers do)")
    if dry_run:
        typer.echo(plan.text())
    else:
        event(plan.text(), **{k: v for k, v in plan.to_dict().items() if k not in ("notes",)})
    return plan


def _time_plan(plan, run, space, dry_run) -> None:
    """Measure one forward of the loaded model and say how long the planned forwards take."""
    from autosel.log import event
    from autosel.search.plan import measure_forward
    from autosel.search.sweep import select_candidates

    ids = [p.id for p in select_candidates(list(run.catalogue.values()), space.candidates.include,
                                           space.candidates.exclude, space.model)]
    plan.seconds_per_image_forward = measure_forward(run, ids, space.timesteps[0])
    if dry_run:
        typer.echo("  " + plan.time_text())
    else:
        event(f"plan: {plan.time_text()}", estimated_seconds=plan.estimated_seconds)


def _peak_memory_text() -> str:
    from autosel.search.plan import format_bytes, peak_resident_bytes

    return f"{format_bytes(peak_resident_bytes())} (peak RSS of this process)"


def _with_dtype_check(dtype: str | None) -> str | None:
    if dtype is not None and dtype not in ("float32", "float16", "bfloat16"):
        raise typer.BadParameter(f"'{dtype}' is not one of float32, float16, bfloat16", param_hint="--dtype")
    return dtype


def _with_dtype(config, dtype: str | None):
    """``config`` with its model's dtype replaced by ``--dtype`` (when given)."""
    if _with_dtype_check(dtype) is None:
        return config
    return config.replace(model={**config.model.model_dump(), "dtype": dtype})


def _with_overrides(space, image_size, dtype, pairs, pairs_per_category, train_images, test_images):
    """``space`` with the command line's size, dtype and proxy options (given ones only)."""
    _with_dtype_check(dtype)
    proxy = {"pairs": pairs, "pairs_per_category": pairs_per_category, "train_images": train_images, "test_images": test_images}
    proxy = {key: value for key, value in proxy.items() if value is not None}
    return space.replace(
        image_size=_parse_image_size(image_size), dtype=dtype,
        proxy={**space.proxy.model_dump(), **proxy} if proxy else None,
    )


def _parse_timesteps(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        values = []
    if not values:
        raise typer.BadParameter(f"'{text}' is not a comma-separated list of integers", param_hint="--timesteps")
    return values


cache_app = typer.Typer(help="Inspect or clear the activation cache of the search stage.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
CacheDirOpt = Annotated[
    Optional[Path],
    typer.Option("--cache-dir", help="Cache folder; default $AUTOSEL_CACHE_DIR or ~/.cache/autosel/activations."),
]


@cache_app.command("info")
def cache_info_command(cache_dir: CacheDirOpt = None, output_format: FormatOpt = OutputFormat.table) -> None:
    """List every cached activation entry (model, id, t, dataset, shape, size) with its state
    (ok, unverified, corrupt, incomplete) and the total. Checksums are read by `autosel cache verify`.

    Example: autosel cache info --format json
    """
    _print_cache_entries(cache_dir, output_format, verify=False)


@cache_app.command("verify")
def cache_verify_command(cache_dir: CacheDirOpt = None, output_format: FormatOpt = OutputFormat.table) -> None:
    """Read every cached array and check it against the checksum written with it; exits with 1
    when an entry is corrupt or incomplete (searches recompute those; `autosel cache clear --broken`
    deletes them).

    Example: autosel cache verify --cache-dir /scratch/autosel-cache
    """
    entries = _print_cache_entries(cache_dir, output_format, verify=True)
    broken = [e for e in entries if e["state"] in ("corrupt", "incomplete")]
    if broken:
        typer.echo(f"{len(broken)} of {len(entries)} entries are corrupt or incomplete: "
                   "`autosel cache clear --broken` deletes them", err=True)
        raise typer.Exit(1)


def _print_cache_entries(cache_dir: Path | None, output_format: OutputFormat, verify: bool) -> list[dict]:
    from autosel.search import ActivationCache, default_cache_dir

    cache = ActivationCache(cache_dir or default_cache_dir())
    entries = cache.entries(verify=verify)
    records = [{**e, "shape": "×".join(map(str, e["shape"])) if e["shape"] else "?", "MB": round(e["bytes"] / 1e6, 2)}
               for e in entries]
    if output_format is OutputFormat.table:
        records = [{**r, "state": r["state"] + (f" ({r['reason']})" if r["reason"] else "")} for r in records]
    total = sum(e["bytes"] for e in entries) / 1e6
    counts = ", ".join(f"{sum(e['state'] == s for e in entries)} {s}" for s in ("ok", "unverified", "corrupt", "incomplete")
                       if any(e["state"] == s for e in entries))
    columns = [("model", "model"), ("activation", "id"), ("timestep", "t"), ("dataset", "dataset"), ("role", "role"),
               ("shape", "N×C×H×W"), ("MB", "MB"), ("state", "state")]
    title = f"{len(records)} entries ({counts or 'none'}), {total:.1f} MB in {cache.root}"
    print_records(records, output_format, columns, title=title)
    return entries


@cache_app.command("clear")
def cache_clear_command(
    cache_dir: CacheDirOpt = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Only this model's entries.")] = None,
    broken: Annotated[bool, typer.Option("--broken", help="Only corrupt or incomplete entries (checksums are read).")] = False,
) -> None:
    """Delete cached entries (all, one model's, or the broken ones) with every file they own,
    leftovers of interrupted writers included; files the cache did not write stay.

    Example: autosel cache clear --model tiny ; autosel cache clear --broken
    """
    from autosel.search import ActivationCache, default_cache_dir

    cache = ActivationCache(cache_dir or default_cache_dir())
    typer.echo(f"deleted {cache.clear(model, broken_only=broken)} entries from {cache.root}")


class ExportTarget(str, Enum):
    """Formats ``autosel export`` writes."""

    gdf = "gdf"


@app.command("export")
def export_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="Feature config YAML.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write into.")],
    to: Annotated[ExportTarget, typer.Option("--to", help="Target format.")] = ExportTarget.gdf,
) -> None:
    """Write a feature config in another codebase's format (gdf: layer JSON + args + README).

    What the target cannot express is printed as a warning and listed in the README.

    Example: autosel export --config results/presets/meng-practical-sdxl.yaml --to gdf --out gdf-sdxl/
    """
    from autosel.config import FeatureConfig
    from autosel.gdf import export_gdf

    result = export_gdf(FeatureConfig.from_yaml(config), out)
    for note in result.notes:
        typer.echo(f"warning: {note}", err=True)
    for path in result.files:
        typer.echo(f"wrote {path}")


@app.command("import")
def import_command(
    layers: Annotated[Path, typer.Option("--from", help='gdf layer JSON ({"<id>": true, ...}).')],
    out: Annotated[Path, typer.Option("--out", "-o", help="Feature config YAML to write.")],
    model: Annotated[
        Optional[str], typer.Option("--model", "-m", help="Model; default: from an args.json beside the JSON.")
    ] = None,
    timestep: Annotated[Optional[int], typer.Option("--t", help="Timestep of every activation (gdf's t); default 50.")] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size", help="gdf's img_size; default: native.")] = None,
    prompt: Annotated[Optional[str], typer.Option("--prompt", help="gdf's prompt; default empty.")] = None,
) -> None:
    """Turn a gdf layer selection into a feature config, validated against the model's catalogue.

    Settings not given come from an args.json beside the layer file (as `autosel export` writes).

    Example: autosel import --from config_xl_practical.json --model sdxl --t 50 --out sdxl.yaml
    """
    from autosel.catalog import list_activations
    from autosel.gdf import import_gdf

    feature_config = import_gdf(layers, model, timestep=timestep, image_size=image_size, prompt=prompt)
    size = feature_config.extraction.image_size
    feature_config.check_ids(point.id for point in list_activations(feature_config.model.name, size))
    feature_config.to_yaml(out)
    typer.echo(f"wrote {out} ({len(feature_config.activations)} activations at t={feature_config.timesteps})")


def _parse_image_size(text: str | None) -> int | tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().replace("×", "x").split("x")
    try:
        sides = [int(part) for part in parts]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2) or min(sides) <= 0:
        raise typer.BadParameter(f"'{text}' is not N or HxW (positive integers)", param_hint="--image-size")
    return sides[0] if len(sides) == 1 else (sides[0], sides[1])


def _quiet_libraries() -> None:
    """Keep diffusers/transformers to warnings and errors; their info logs are not for users."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")


def main() -> None:
    """Entry point of the ``autosel`` console script."""
    _quiet_libraries()
    try:
        app()
    except AutoselError as error:
        if os.environ.get("AUTOSEL_DEBUG"):
            raise
        from autosel.log import error_line

        typer.echo(error_line(str(error), error.exit_code), err=True)
        sys.exit(error.exit_code)


if __name__ == "__main__":
    main()
