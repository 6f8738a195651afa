"""The Typer application, its global options and its error boundary.

Every command parses its options, calls the library and prints through ``autosel.output``.
Errors from user input (:class:`autosel.errors.AutoselError`) become one line on stderr and a
non-zero exit code, inside the application itself (so ``CliRunner`` sees what a shell sees);
set ``AUTOSEL_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from autosel.errors import AutoselError


class _OneLineErrors(TyperGroup):
    """Turns an :class:`AutoselError` raised by any command into one stderr line and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AutoselError as error:
            if os.environ.get("AUTOSEL_DEBUG"):
                raise
            from autosel.log import error_line

            typer.echo(error_line(str(error), error.exit_code), err=True)
            ctx.exit(error.exit_code)


app = typer.Typer(
    cls=_OneLineErrors,
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
    ctx: typer.Context,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors (files are still written).")] = False,
    log_json: Annotated[bool, typer.Option("--log-json", help="Stage messages as JSON lines on stderr, no progress bars.")] = False,
) -> None:
    """Find which diffusion-model activations and timesteps make the best features.

    Start with `autosel search --model tiny`; every command has --help with an example.
    """
    from autosel.log import configure

    configure(quiet=quiet, json_lines=log_json)
    quiet_libraries()
    if quiet:  # results still go to files, errors to stderr; stdout comes back when the command ends
        ctx.with_resource(contextlib.redirect_stdout(ctx.with_resource(open(os.devnull, "w"))))


def quiet_libraries() -> None:
    """Keep diffusers/transformers to errors; their info logs and warnings are not for users
    (the variables reach libraries loaded later, the levels those already loaded)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    for name in ("diffusers", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main() -> None:
    """Entry point of the ``autosel`` console script."""
    quiet_libraries()
    app()
