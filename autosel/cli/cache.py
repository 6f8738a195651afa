"""``autosel cache info|verify|clear``: the activation cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from autosel.cli.app import app
from autosel.cli.options import CacheDirOpt, FormatOpt
from autosel.output import OutputFormat, print_records

cache_app = typer.Typer(help="Inspect or clear the activation cache of the search stage.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
@cache_app.command("info")
def cache_info_command(cache_dir: CacheDirOpt = None, output_format: FormatOpt = OutputFormat.table) -> None:
    """List every cached activation entry (model, id, t, dataset, shape, size) with its state
    (ok, unverified, corrupt, incomplete) and the total. Checksums are read by `autosel cache verify`.

    Example: autosel cache info --format json
    """
    print_cache_entries(cache_dir, output_format, verify=False)


@cache_app.command("verify")
def cache_verify_command(cache_dir: CacheDirOpt = None, output_format: FormatOpt = OutputFormat.table) -> None:
    """Read every cached array and check it against the checksum written with it; exits with 1
    when an entry is corrupt or incomplete (searches recompute those; `autosel cache clear --broken`
    deletes them).

    Example: autosel cache verify --cache-dir /scratch/autosel-cache
    """
    from autosel.cache import default_cache_dir
    from autosel.errors import InvalidInputError

    root = cache_dir or default_cache_dir()
    if not root.is_dir():  # nothing verified is not a pass: a mistyped --cache-dir must not look healthy
        raise InvalidInputError(f"no cache folder at {root}: nothing to verify (--cache-dir or $AUTOSEL_CACHE_DIR names it)")
    entries = print_cache_entries(cache_dir, output_format, verify=True)
    broken = [e for e in entries if e["state"] in ("corrupt", "incomplete")]
    if broken:
        typer.echo(f"{len(broken)} of {len(entries)} entries are corrupt or incomplete: "
                   "`autosel cache clear --broken` deletes them", err=True)
        raise typer.Exit(1)


def print_cache_entries(cache_dir: Path | None, output_format: OutputFormat, verify: bool) -> list[dict]:
    from autosel.cache import ActivationCache, default_cache_dir

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
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (scripts).")] = False,
) -> None:
    """Delete cached entries (all, one model's, or the broken ones) with every file they own,
    leftovers of interrupted writers included; files the cache did not write stay. Asks first
    unless --yes is given (without a terminal to answer, nothing is deleted).

    Examples:

    * `autosel cache clear --model tiny`
    * `autosel cache clear --broken --yes`
    """
    from autosel.cache import ActivationCache, default_cache_dir

    cache = ActivationCache(cache_dir or default_cache_dir())
    if not yes and cache.root.is_dir():
        which = "the corrupt or incomplete entries" if broken else "every entry" if model is None else f"every entry of {model}"
        try:
            agreed = typer.confirm(f"delete {which} in {cache.root}?", default=False, err=True)
        except typer.Abort:  # no terminal to answer (end of input) or Ctrl-C: no
            agreed = False
        if not agreed:
            typer.echo("\nnothing deleted (--yes skips this question)", err=True)
            raise typer.Exit(1)
    typer.echo(f"deleted {cache.clear(model, broken_only=broken)} entries from {cache.root}")


