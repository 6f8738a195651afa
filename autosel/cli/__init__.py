"""The ``autosel`` command line: thin commands over the library (one module per group of commands).

``main`` is the console script; ``app`` the Typer application (for ``typer.testing.CliRunner``).
"""

# importing a module registers its commands; this order is the order of `autosel --help`
from autosel.cli import models, features, search, studies, cache, interop, about  # noqa: F401, I001
from autosel.cli.app import app, main

__all__ = ["app", "main"]
