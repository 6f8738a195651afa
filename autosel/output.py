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
        widths = [_longest_word([header, *(_cell(r.get(key)) for r in records)]) for key, header in columns]
        for (_, header), width in zip(columns, widths):  # wrap at spaces and commas, never inside an id
            table.add_column(header, overflow="fold", min_width=width)
        for record in records:
            table.add_row(*(_cell(record.get(key)) for key, _ in columns))
        console = Console()
        if not console.is_terminal:  # piped: keep one record per line instead of folding at 80
            console = Console(width=240)
        needed = sum(widths) + 3 * len(widths) + 1  # cells, padding and borders
        if needed > console.width:  # wider than the terminal rather than a cropped column or a split id
            console = Console(width=needed, force_terminal=console.is_terminal)
        console.print(table)


MAX_UNSPLIT = 60
"""Words (ids) up to this long are never split across lines in a table."""


def _longest_word(cells: Sequence[str]) -> int:
    """The longest space- or comma-free run in ``cells`` (at most :data:`MAX_UNSPLIT`)."""
    return min(MAX_UNSPLIT, max((len(word) for cell in cells for word in cell.replace(",", " ").split()), default=1))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, str) and value == "":
        return '""'
    return str(value)
