"""The SQL store of screening results: one table beside the Optuna study, any SQLAlchemy URL.

``sqlite:///runs/autosel.db`` (the embedded default: one writer), ``postgresql://…`` or
``mysql+pymysql://…`` for several machines. Rows are tidy: one per (sweep, activation,
timestep, metric). A sweep is identified by a key over everything that changes its scores, so
a rerun finds and reuses its rows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import sqlalchemy as sa

from autosel.errors import AutoselError
from autosel.urls import check_storage_url, mask_in, mask_url

T = TypeVar("T")

SWEEP_COLUMNS = (
    "model", "revision", "task", "dataset", "role", "id", "kind", "stage", "level", "channels",
    "height", "width", "depth", "timestep", "metric", "value", "n_items", "seconds",
)

_metadata = sa.MetaData()
sweep_table = sa.Table(
    "autosel_sweep",
    _metadata,
    sa.Column("row", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sweep_key", sa.String(64), nullable=False, index=True),
    sa.Column("model", sa.String(512), nullable=False),
    sa.Column("revision", sa.String(128)),
    sa.Column("task", sa.String(64), nullable=False),
    sa.Column("dataset", sa.String(1024), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("id", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(64)),
    sa.Column("stage", sa.String(16)),
    sa.Column("level", sa.Integer),
    sa.Column("channels", sa.Integer),
    sa.Column("height", sa.Integer),
    sa.Column("width", sa.Integer),
    sa.Column("depth", sa.Float),
    sa.Column("timestep", sa.Integer, nullable=False),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("n_items", sa.Integer),
    sa.Column("seconds", sa.Float),
    sa.Column("created", sa.DateTime),
    sa.UniqueConstraint("sweep_key", "id", "timestep", "metric", name="autosel_sweep_unique"),
)


class StorageError(AutoselError):
    """The SQL store cannot be reached or used (the message masks any password)."""


def default_storage(out: str | Path, make_folder: bool = True) -> str:
    """The embedded default: a SQLite file in the output folder (shared with the study), the
    folder made unless ``make_folder`` is false (a dry run only reads)."""
    path = Path(out).resolve() / "autosel.db"
    if make_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def portable_storage(url: str) -> str:
    """``url`` as recorded in files meant to travel (best.yaml provenance): a SQLite file under
    the working directory becomes relative to it, so a committed config names no home folder."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and Path(url[len(prefix):]).is_absolute():
        path = Path(url[len(prefix):])
        if path.is_relative_to(Path.cwd()):
            return prefix + path.relative_to(Path.cwd()).as_posix()
    return url


SQLITE_BUSY_SECONDS = 60
"""How long a SQLite connection waits for another process's write lock before failing."""


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (``None`` for other URLs and in-memory ones)."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def engine_options(url: str) -> dict[str, Any]:
    """``create_engine`` keywords for ``url``: a busy timeout for SQLite files, so a reader and a
    writer (``autosel studies`` during a search) wait for each other instead of failing."""
    options: dict[str, Any] = {"pool_pre_ping": True}
    if sqlite_file(url) is not None:
        options["connect_args"] = {"timeout": SQLITE_BUSY_SECONDS}
    return options


@contextlib.contextmanager
def schema_lock(url: str) -> Iterator[None]:
    """Serialise table creation on a SQLite file across processes, and switch it to WAL.

    SQLAlchemy's ``create_all`` checks, then creates: two processes opening a new file at once
    both see no table and one fails with "table … already exists". An exclusive ``flock`` on
    ``<file>.lock`` makes the opening one at a time; WAL mode (persistent in the file) lets
    readers read while the search writes. Server stores need neither: their DDL is transactional
    or retried by the caller.
    """
    path = sqlite_file(url)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): creation races stay possible there
            fcntl = None
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with sqlite3.connect(path, timeout=SQLITE_BUSY_SECONDS) as connection:
                connection.execute("PRAGMA journal_mode=WAL")
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)


class StoreBusyError(AutoselError):
    """A second search driver on a SQLite store that one is driving already (SQLite has one writer)."""


@contextlib.contextmanager
def driver_lock(url: str) -> Iterator[None]:
    """Hold ``<file>.driver.lock`` of a SQLite store for a whole search: one driver per SQLite
    file, refused at once rather than failing a trial later (SQLite has one writer: two drivers
    on one file fail each other's trials). Server stores take any number of drivers. The lock
    is the kernel's (``flock``): a killed driver leaves no stale lock.

    Raises:
        StoreBusyError: another process holds the lock; naming it and the server-store remedy.
    """
    path = sqlite_file(url)
    try:
        import fcntl
    except ImportError:  # no flock (Windows): not guarded there
        fcntl = None
    if path is None or fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".driver.lock")
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise StoreBusyError(
                f"the SQLite store {path} is in use by another autosel search ({holder}, lock {lock_path}): SQLite takes "
                "one driver at a time; wait for it to end, or run several drivers on a server store with --storage postgresql://…"
            ) from None
        import os
        import socket

        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} on {socket.gethostname()}")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def with_schema(url: str, create: Callable[[], T]) -> T:
    """``create()`` (which opens the store at ``url`` and creates its missing tables) under
    :func:`schema_lock`; on a server store, where two drivers may create the same tables at
    once, the loser retries. Any failure is one line with the password masked."""
    for attempt in range(4):
        try:
            with schema_lock(url):
                return create()
        except (sa.exc.IntegrityError, sa.exc.ProgrammingError) as error:
            if attempt == 3:
                raise storage_error(url, error) from None
            time.sleep(0.5 + random.random())  # another driver is creating the same tables
        except Exception as error:  # noqa: BLE001 - sqlalchemy, driver and optuna errors alike
            raise storage_error(url, error) from None
    raise AssertionError("unreachable")


def connect(url: str) -> sa.Engine:
    """An engine for ``url`` whose tables exist; fails with a one-line, password-masked error."""
    check_storage_url(url)

    def create() -> sa.Engine:
        engine = sa.create_engine(url, **engine_options(url))
        _metadata.create_all(engine)
        return engine

    return with_schema(url, create)


def storage_error(url: str, error: BaseException) -> StorageError:
    """A one-line error naming the storage with its password masked."""
    reason = (str(getattr(error, "orig", None) or error).strip() or type(error).__name__).splitlines()[0]
    return StorageError(f"cannot use storage {mask_url(url)}: {mask_in(reason, url)}")


def existing_engine(url: str, table: str) -> sa.Engine | None:
    """An engine for ``url`` when its database already exists and holds ``table``, else ``None``;
    creates nothing (a dry run looks at what is stored and writes nothing)."""
    try:
        check_storage_url(url)
        path = sqlite_file(url)
        if path is not None and not path.is_file():  # connecting would create the file
            return None
        engine = sa.create_engine(url, **engine_options(url))
        if sa.inspect(engine).has_table(table):
            return engine
        engine.dispose()
    except (sa.exc.SQLAlchemyError, AutoselError, ImportError, ValueError):  # no usable store: nothing stored
        pass
    return None


class SweepStore:
    """Read and append screening rows."""

    def __init__(self, url: str, engine: sa.Engine | None = None) -> None:
        self.url = url
        self.engine = engine or connect(url)

    @classmethod
    def existing(cls, url: str) -> SweepStore | None:
        """The store at ``url`` when it already holds screening rows' table, else ``None`` (creates nothing)."""
        engine = existing_engine(url, sweep_table.name)
        return None if engine is None else cls(url, engine)

    def rows(self, sweep_key: str | None = None) -> pd.DataFrame:
        """All rows of one sweep (or of every sweep), in insertion order."""
        query = sa.select(sweep_table).order_by(sweep_table.c.row)
        if sweep_key is not None:
            query = query.where(sweep_table.c.sweep_key == sweep_key)
        with self.engine.connect() as connection:
            return pd.read_sql(query, connection)

    def done(self, sweep_key: str) -> set[tuple[str, int]]:
        """(id, timestep) pairs already scored in this sweep."""
        query = sa.select(sweep_table.c.id, sweep_table.c.timestep).where(sweep_table.c.sweep_key == sweep_key).distinct()
        with self.engine.connect() as connection:
            return {(name, int(t)) for name, t in connection.execute(query)}

    def add(self, sweep_key: str, records: Iterable[dict[str, Any]]) -> int:
        """Append rows in one transaction (all or nothing); returns how many were new.

        Rows another process stored meanwhile (same sweep, id, timestep, metric: the same
        deterministic score) are skipped, so drivers sharing a server store can screen at once.
        """
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        rows = [{**{k: r.get(k) for k in SWEEP_COLUMNS}, "sweep_key": sweep_key, "created": now} for r in records]
        if not rows:
            return 0
        try:
            with self.engine.begin() as connection:
                connection.execute(sa.insert(sweep_table), rows)
            return len(rows)
        except sa.exc.IntegrityError:
            added = 0
            for row in rows:
                try:
                    with self.engine.begin() as connection:
                        connection.execute(sa.insert(sweep_table), [row])
                    added += 1
                except sa.exc.IntegrityError:
                    continue
            return added
