"""The ``autosel`` command line: thin commands over the library.

Every command parses its options, calls the library and prints through ``autosel.output``.
Errors from user input (:class:`autosel.errors.AutoselError`) become one line on stderr and a
non-zero exit code; set ``AUTOSEL_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import os
import sys
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
    context_settings={"help_option_names": ["-h", "--help"]},
)

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
        typer.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)
    except ValueError as error:  # invalid values found by the library (e.g. image size)
        if os.environ.get("AUTOSEL_DEBUG"):
            raise
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
