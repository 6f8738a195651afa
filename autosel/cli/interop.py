"""``autosel export`` and ``import``: feature configs to and from gdf."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from autosel.cli.app import app


class ExportTarget(str, Enum):
    """Formats ``autosel export`` writes."""

    gdf = "gdf"


@app.command("export")
def export_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="Feature config YAML, or a shipped preset's name (see `autosel presets`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write into.")],
    to: Annotated[ExportTarget, typer.Option("--to", help="Target format.")] = ExportTarget.gdf,
) -> None:
    """Write a feature config in another codebase's format (gdf: layer JSON + args + README).

    What the target cannot express is printed as a warning and listed in the README.

    Example: autosel export --config meng-practical-sdxl --to gdf --out gdf-sdxl/
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
    layers: Annotated[Path, typer.Option("--from", help='gdf layer JSON ({"ID": true, ...}).')],
    out: Annotated[Path, typer.Option("--out", "-o", help="Feature config YAML to write.")],
    model: Annotated[
        Optional[str], typer.Option("--model", "-m", help="Model; default: from an args.json beside the JSON.")
    ] = None,
    timestep: Annotated[Optional[int], typer.Option("--timestep", help="Timestep of every activation (gdf's t); default 50.")] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size", help="gdf's img_size; default: native.")] = None,
    prompt: Annotated[Optional[str], typer.Option("--prompt", help="gdf's prompt; default empty.")] = None,
) -> None:
    """Turn a gdf layer selection into a feature config, validated against the model's catalogue.

    Settings not given come from an args.json beside the layer file (as `autosel export` writes).

    Example: autosel import --from config_xl_practical.json --model sdxl --timestep 50 --out sdxl.yaml
    """
    from autosel.catalog import list_activations
    from autosel.gdf import import_gdf

    feature_config = import_gdf(layers, model, timestep=timestep, image_size=image_size, prompt=prompt)
    size = feature_config.extraction.image_size
    feature_config.check_ids(point.id for point in list_activations(feature_config.model.name, size))
    feature_config.to_yaml(out)
    typer.echo(f"wrote {out} ({len(feature_config.activations)} activations at t={feature_config.timesteps})")


