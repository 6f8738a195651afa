"""``autosel models``, ``catalog`` and ``inspect``: what a model offers."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from autosel.cli.app import app
from autosel.cli.options import (
    DeviceOpt,
    DtypeOpt,
    FormatOpt,
    ImageSizeOpt,
    ModelOpt,
    NoProgressOpt,
    check_dtype,
    parse_image_size,
    parse_timesteps,
)
from autosel.output import OutputFormat, print_records


@app.command("models")
def models_command(output_format: FormatOpt = OutputFormat.table) -> None:
    """List the registry's short names with hub id, family and native resolution.

    Example: autosel models --format json
    """
    from autosel.models import REGISTRY

    records = [
        {
            "name": spec.name,
            "hub_id": spec.hub_id,
            "family": spec.family,
            "resolution": spec.resolution,
            "description": spec.description,
        }
        for spec in REGISTRY.values()
    ]
    columns = [
        ("name", "name"),
        ("hub_id", "hub id"),
        ("family", "family"),
        ("resolution", "px"),
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

    Any diffusers transformer without an adapter (Qwen-Image, Sana, …, or a folder of one) goes
    through the generic path: its blocks found structurally, its configs read, never its weights.

    Examples:

    * `autosel catalog --model sdxl --filter 'up-level0-*-out'`
    * `autosel catalog --model sd15 --image-size 768x512 --format json`
    * `autosel catalog --model qwen-image --filter 'vit-block*-out'`
    """
    from autosel.catalog import list_activations, select_activations

    points = list_activations(model, parse_image_size(image_size))
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


@app.command("inspect")
def inspect_command(
    model: ModelOpt = "tiny",
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="shapes, spair:PATH[:split] or folder:PATH.")] = "shapes",
    timesteps: Annotated[str, typer.Option("--timesteps", help="Comma-separated timesteps (0–999 scale).")] = "50,260",
    ids: Annotated[
        Optional[list[str]], typer.Option("--ids", help="Id or glob (repeatable); default every id but attention maps.")
    ] = None,
    factor: Annotated[
        float, typer.Option("--factor", min=1.0, max=1e6, help="Massive: mean |value| over image tokens > FACTOR × the median channel's.")
    ] = 100.0,
    images: Annotated[int, typer.Option("--images", min=1, help="How many images of the dataset to run.")] = 8,
    image_size: ImageSizeOpt = None,
    dtype: DtypeOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per denoiser forward.")] = 8,
    device: DeviceOpt = None,
    all_rows: Annotated[bool, typer.Option("--all", help="Table: list every (id, t), not only those with findings.")] = False,
    output_format: FormatOpt = OutputFormat.table,
    no_progress: NoProgressOpt = False,
) -> None:
    """Find massive activations: channels whose mean |value| over the image tokens is more than
    FACTOR (default 100) times the median channel's, per id and timestep, with their share of
    the feature's energy and NaN/Inf counts. `post: drop-massive` in a feature config zeroes them.

    Examples:

    * `autosel inspect --model flux-dev --timesteps 260 --ids 'vit-block*-norm-in'`
    * `autosel inspect --model tiny-sd3-random --format json`
    """
    from autosel.denoiser import resolve_dtype
    from autosel.inspection import inspect_model

    dtype = resolve_dtype(check_dtype(dtype), device)  # checks --device too
    rows = inspect_model(
        model, dataset=dataset, timesteps=parse_timesteps(timesteps) or [], ids=ids, factor=factor, images=images,
        image_size=parse_image_size(image_size), dtype=dtype, device=device, batch_size=batch_size,
        progress=not no_progress,
    )
    if output_format is not OutputFormat.table:
        print_records([row.to_dict() for row in rows], output_format, [])
        return
    shown = [row for row in rows if all_rows or row.massive_channels or row.nan or row.inf]
    records = [
        {
            "id": row.id, "timestep": row.timestep, "sigma": f"{row.sigma:.3f}", "channels": row.channels,
            "massive": ", ".join(f"{c} ({r:g}x)" for c, r in zip(row.massive_channels[:8], row.ratios)) or "-",
            "energy": f"{100 * row.energy_share:.1f}", "nan_inf": f"{row.nan}/{row.inf}",
        }
        for row in shown
    ]
    flagged = sum(1 for row in rows if row.massive_channels)
    title = (f"{flagged} of {len(rows)} (id, t) have massive channels (> {factor:g}x the median channel's mean |value|)"
             + ("" if all_rows else "; --all lists every row"))
    columns = [("id", "id"), ("timestep", "t"), ("sigma", "σ"), ("channels", "C"), ("massive", "massive channels (x median)"),
               ("energy", "energy %"), ("nan_inf", "NaN/Inf")]
    print_records(records, OutputFormat.table, columns, title=title)


