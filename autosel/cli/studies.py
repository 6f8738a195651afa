"""``autosel studies``, ``report`` and ``dashboard``: what a store holds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from autosel.cli.app import app
from autosel.cli.options import FormatOpt, StorageOpt
from autosel.output import OutputFormat, print_records

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer


@app.command("studies")
def studies_command(storage: StorageOpt = None, output_format: FormatOpt = OutputFormat.table) -> None:
    """List the studies in a store: model, task, trials complete/running/failed, best held-out score.

    Example: autosel studies --storage postgresql://user@host/db
    """
    from autosel.report import study_summaries

    records = study_summaries(existing_storage(storage))
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
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder; default runs/reports/STUDY.")] = None,
    html: Annotated[bool, typer.Option("--html", help="Also write one self-contained report.html.")] = False,
    matches: Annotated[
        bool, typer.Option("--matches/--no-matches", help="Draw best.yaml's and the legacy preset's matched keypoints on held-out pairs (runs the model).")
    ] = True,
    device: Annotated[Optional[str], typer.Option("--device", help="Device for the matches picture: cpu, cuda…; default: CUDA if available.")] = None,
) -> None:
    """Write a report of a study: screen heatmap, history, Pareto front, importances, best vs presets.

    Markdown + PNGs (matplotlib, no browser or network needed) and trials.csv.

    Example: autosel report --study tiny-correspondence --html
    """
    from autosel.limits import check_study_name
    from autosel.report import write_report

    if out is None:  # the name becomes a folder: no '/' or '..' may take it outside
        check_study_name(study)
    report = write_report(study, existing_storage(storage), out or Path("runs") / "reports" / study, html=html,
                          matches=matches, device=device)
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

    Example: autosel dashboard --storage sqlite:///runs/autosel.db --port 8080
    """
    from autosel.config import mask_password
    from autosel.optimise import open_storage, quiet_optuna

    url = existing_storage(storage)
    check_port_free(port)
    quiet_optuna()
    rdb = open_storage(url)
    typer.echo(f"optuna-dashboard for {mask_password(url)} on http://127.0.0.1:{port}/ (Ctrl-C stops)")
    try:
        quiet_dashboard_server(rdb, port).serve_forever()
    except KeyboardInterrupt:
        pass


def quiet_dashboard_server(storage: object, port: int) -> WSGIServer:
    """optuna-dashboard's WSGI app on a wsgiref server on 127.0.0.1 that does not log every HTTP
    request (``run_server`` does; errors still reach stderr)."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from optuna_dashboard import wsgi

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the standard library's name
            pass

    return make_server("127.0.0.1", port, wsgi(storage), handler_class=QuietHandler)


def check_port_free(port: int) -> None:
    """Refuse a port another program listens on, before anything starts."""
    import socket

    from autosel.errors import InvalidInputError

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # as the server itself binds: a port left in TIME_WAIT by a dashboard just stopped is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            reason = "already in use" if error.errno in (98, 48) else (error.strerror or str(error)).lower()
            raise InvalidInputError(f"port {port} on 127.0.0.1 is {reason}: choose another with --port") from None


def existing_storage(storage: str | None) -> str:
    """``storage``, or the default SQLite file, which must exist (reading creates nothing)."""
    from autosel.errors import InvalidInputError

    if storage is not None:
        if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).is_file():
            raise InvalidInputError(f"no store at {storage}: run `autosel search` first, or pass --storage")
        return storage
    path = Path("runs") / "autosel.db"
    if not path.is_file():
        raise InvalidInputError(f"no store at {path}: run `autosel search` first, or pass --storage")
    return f"sqlite:///{path.resolve()}"


