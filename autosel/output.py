"""One place that prints results for the CLI: rich tables for people, JSON/YAML for programs."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from enum import Enum
from typing import Any

import yaml


class OutputFormat(str, Enum):
    """How a listing is printed."""

    table = "table"
    json = "json"
    yaml = "yaml"


def print_document(document: dict[str, Any], output_format: OutputFormat) -> None:
    """Print one nested document as JSON or YAML (callers print tables themselves)."""
    if output_format is OutputFormat.yaml:
        sys.stdout.write(yaml.safe_dump(document, sort_keys=False))
    else:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")


def print_records(
    records: Sequence[dict[str, Any]],
    output_format: OutputFormat,
    columns: Sequence[tuple[str, str]],
    title: str | None = None,
) -> None:
    """Print ``records`` as a table (``columns`` = (key, header) pairs), JSON or YAML.

    JSON and YAML carry every key of every record; the table shows ``columns`` only.
    """
    if output_format is OutputFormat.json:
        sys.stdout.write(json.dumps(list(records), indent=2) + "\n")
    elif output_format is OutputFormat.yaml:
        sys.stdout.write(yaml.safe_dump(list(records), sort_keys=False))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, title_justify="left", header_style="bold")
        for _, header in columns:
            table.add_column(header, overflow="fold")
        for record in records:
            table.add_row(*(_cell(record.get(key)) for key, _ in columns))
        console = Console()
        if not console.is_terminal:  # piped: keep one record per line instead of folding at 80
            console = Console(width=240)
        console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, str) and value == "":
        return '""'
    return str(value)
