"""The Typer application, its global options and its error boundary.

Every command parses its options, calls the library and prints through ``autosel.output``.
Errors from user input (:class:`autosel.errors.AutoselError`) become one line on stderr and a
non-zero exit code, inside the application itself (so ``CliRunner`` sees what a shell sees);
set ``AUTOSEL_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import threading
from collections.abc import Iterator
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup, TyperOption

from autosel.errors import AutoselError
from autosel.log import quiet_libraries

_typed = TyperOption.display_type_rich


def _no_type_on_flags(option: TyperOption, ctx: click.Context) -> str | None:
    """Help shows ``--dry-run``, not ``--dry-run <bool>``: a flag takes no value."""
    return None if option.is_flag else _typed(option, ctx)


TyperOption.display_type_rich = _no_type_on_flags  # type: ignore[method-assign]


class _OneLineErrors(TyperGroup):
    """Turns an :class:`AutoselError` raised by any command into one stderr line and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        command = resume_command(ctx)
        try:
            with stop_on_sigterm():
                return super().invoke(ctx)
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (a scheduler's stop, docker stop)
            from autosel.log import error_line

            name, code = ("SIGTERM", 143) if isinstance(stop, Terminated) else ("Ctrl-C", 130)
            typer.echo(error_line(f"stopped by {name}; completed trials, stored sweep rows and cached activations are kept "
                                  f"(a running trial is marked failed and runs again); resume with: {command}", code), err=True)
            ctx.exit(code)
        except AutoselError as error:
            if os.environ.get("AUTOSEL_DEBUG"):
                raise
            from autosel.log import error_line

            typer.echo(error_line(str(error), error.exit_code), err=True)
            ctx.exit(error.exit_code)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, so that it unwinds as Ctrl-C does."""


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while the command runs (main thread only), so the
    driver fails its running trial and the store is closed, instead of a native abort."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def resume_command(ctx: click.Context) -> str:
    """The command line that reruns this command (a search resumes its study from the store)."""
    options = [f"--{name.replace('_', '-')}" for name in ("quiet", "log_json") if ctx.params.get(name)]
    protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args
    return shlex.join(["autosel", *options, *protected, *ctx.args])


app = typer.Typer(
    cls=_OneLineErrors,
    name="autosel",
    help="Find which diffusion-model activations and timesteps make the best features.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main_options(
    ctx: typer.Context,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors (files are still written).")] = False,
    log_json: Annotated[bool, typer.Option("--log-json", help="Stage messages as JSON lines on stderr, no progress bars.")] = False,
    version: Annotated[
        bool, typer.Option("--version", "-V", is_eager=True, callback=lambda shown: print_version(shown), help="Print the version and exit.")
    ] = False,
) -> None:
    """Find which diffusion-model activations and timesteps make the best features.

    Start with `autosel search --model tiny`; every command has --help with an example.
    """
    from autosel.log import configure

    configure(quiet=quiet, json_lines=log_json)
    quiet_libraries()
    if quiet:  # results still go to files, errors to stderr; stdout comes back when the command ends
        ctx.with_resource(contextlib.redirect_stdout(ctx.with_resource(open(os.devnull, "w"))))


def print_version(shown: bool) -> None:
    """``--version``: print ``autosel VERSION`` and stop (before any command runs)."""
    if shown:
        from autosel import __version__

        typer.echo(f"autosel {__version__}")
        raise typer.Exit()


def main() -> None:
    """Entry point of the ``autosel`` console script."""
    quiet_libraries()
    app()
