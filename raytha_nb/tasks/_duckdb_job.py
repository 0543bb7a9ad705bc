"""What the DuckDB data jobs share: their own connection, up-front checks, progress, cancel.

Each job runs its statement on a connection of its own, because DuckDB reports
``query_progress()`` only on the connection where ``enable_progress_bar`` was set and
``interrupt()`` stops only a query running on that very connection object.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from .._manager import check_executor
from .._results import staged
from .._sql import literal
from ..api import submit
from ..context import TaskContext
from ..errors import TaskCancelled
from ..widgets import show_in_notebook

T = TypeVar("T")

#: Where a job's data lives: a DuckDB file, a connection of the notebook's, or none.
Database = str | os.PathLike[str] | duckdb.DuckDBPyConnection | None

#: How often the poller samples progress and looks for a cancel request (seconds).
POLL_INTERVAL = 0.02

#: Steps a data job goes through (``task_step``).
PLANNING, RUNNING, FINALISING = 1, 2, 3

_IDENT = r"(?:[A-Za-z_][A-Za-z0-9_$]*|\"(?:[^\"]|\"\")+\")"
_QUALIFIED = re.compile(rf"{_IDENT}(?:\.{_IDENT}){{0,2}}")
_OPTION = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_table_name(text: str) -> bool:
    """True for ``orders``, ``main.orders``, ``db.main."Order Lines"``."""
    return _QUALIFIED.fullmatch(text.strip()) is not None


def connect(database: Database, what: str, *, create: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection for one job: fresh in-memory, a cursor of ``database``, or to its file."""
    if database is None:
        return duckdb.connect()
    if isinstance(database, duckdb.DuckDBPyConnection):
        return database.cursor()
    if not isinstance(database, (str, os.PathLike)):
        raise TypeError(
            f"{what}: database= must be a DuckDB file path or a duckdb connection, "
            f"not {type(database).__name__}"
        )
    path = Path(database).expanduser().resolve()
    if not path.is_file() and not (create and path.parent.is_dir()):
        where = path if path.parent.is_dir() else path.parent
        fix = (
            f"create the folder {path.parent} first, or choose another path"
            if create
            else "check the path, or pass database=None to query files and frames only"
        )
        raise FileNotFoundError(
            f"{what}: no DuckDB database at {path} ({where} does not exist); {fix}"
        )
    try:
        return duckdb.connect(str(path))
    except duckdb.IOException as exc:
        raise OSError(
            f"{what}: cannot open {path}: {exc}. Another process holds it; close it there, "
            "or pass that process's data some other way (a Parquet file)"
        ) from None
    except duckdb.ConnectionException as exc:
        raise ValueError(
            f"{what}: cannot open {path}: {exc}. This process already opened it with other "
            "settings (e.g. read_only=True); pass that connection as database= instead"
        ) from None


def database_label(database: Database) -> str | None:
    """How a job's ``args`` name its database (JSON-able)."""
    if database is None:
        return None
    if isinstance(database, duckdb.DuckDBPyConnection):
        return "<duckdb connection>"
    return str(Path(database).expanduser().resolve())


def first_value(result: duckdb.DuckDBPyConnection) -> int:
    """The count a COPY / INSERT / CREATE TABLE AS statement returns."""
    row = result.fetchone()
    return int(row[0]) if row else 0


def option_name(key: str, what: str) -> str:
    """Check an option name before it goes into SQL text."""
    if not _OPTION.fullmatch(key):
        raise ValueError(f"{what}: {key!r} is not an option name (letters, digits, _)")
    return key


def single_statement(query: Any, what: str) -> duckdb.Statement:
    """Parse ``query``: exactly one SQL statement, or a clear error."""
    if not isinstance(query, str) or not query.strip():
        raise TypeError(f"{what}: expected a SQL query string, got {query!r}")
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise ValueError(f"{what}: the SQL does not parse: {exc}\nFix its syntax.") from None
    if len(statements) != 1:
        raise ValueError(
            f"{what}: expected one SQL statement, got {len(statements)}; "
            "run each statement as its own job"
        )
    return statements[0]


def check(con: duckdb.DuckDBPyConnection, sql: str, what: str) -> None:
    """Bind ``sql`` without running it (``EXPLAIN``); DuckDB's complaint becomes a clear error."""
    try:
        con.execute(f"EXPLAIN {sql}")
    except (duckdb.ParserException, duckdb.NotImplementedException) as exc:
        if "option" in str(exc).lower():
            raise ValueError(f"{what}: {exc}\nUse one of the options DuckDB lists.") from None
        # EXPLAIN cannot wrap every statement (the statement itself parsed): check at run time.
        return
    except duckdb.CatalogException as exc:
        if not re.search(r"\b(Table|View)\b", str(exc)):  # e.g. an unknown function
            raise ValueError(f"{what}: {_first_line(exc)}") from None
        tables = ", ".join(
            row[0]
            for row in con.execute(
                "SELECT DISTINCT table_name FROM duckdb_tables() UNION "
                "SELECT DISTINCT view_name FROM duckdb_views() WHERE NOT internal "
                "ORDER BY 1 LIMIT 20"
            ).fetchall()
        )
        raise ValueError(
            f"{what}: {_first_line(exc)}\nTables and views here: {tables or '(none)'}. "
            "Check the name, or pass database= the DuckDB file that holds it."
        ) from None
    except duckdb.IOException as exc:
        raise FileNotFoundError(
            f"{what}: {_first_line(exc)}\nCheck the path (and the glob, if any)."
        ) from None
    except duckdb.Error as exc:
        raise ValueError(f"{what}: {exc}") from None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0]


def writable_target(path: str | os.PathLike[str], what: str) -> Path:
    """Resolve an output path, or explain why a file cannot be written there."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what}: the output path must be a string or Path, not {path!r}")
    target = Path(path).expanduser().resolve()
    if target.is_dir():
        raise IsADirectoryError(
            f"{what}: {target} is a folder; give a file path such as {target / 'out.csv'}"
        )
    if not target.parent.is_dir():
        raise FileNotFoundError(
            f"{what}: the folder {target.parent} does not exist; create it first "
            "(Path(...).mkdir(parents=True)) or choose another path"
        )
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{what}: cannot write into {target.parent}; choose another folder")
    return target


def start(
    con: duckdb.DuckDBPyConnection,
    body: Callable[[TaskContext], Any],
    *,
    name: str,
    task: str,
    args: dict[str, Any],
    executor: str = "thread",
    widget: bool = True,
) -> str:
    """Queue ``body`` (which closes ``con`` when it ends); close ``con`` if queueing fails.

    In a notebook kernel the job's progress widget is shown in the calling cell, as
    ``%%background`` does (``widget=False``: not). Data jobs run on the kernel's threads
    only: ``body`` holds the DuckDB connection opened (and checked) here, which cannot
    move to another process, and DuckDB lets only one process open a database file
    read-write. DuckDB uses every core anyway."""
    try:
        if executor != "thread":
            check_executor(executor)
            raise ValueError(
                f"{task}: executor={executor!r} is not possible for data jobs: the job's "
                "DuckDB connection (opened and checked in this kernel, perhaps on your own "
                "database) cannot move to another process, and DuckDB lets one process at "
                "a time open a database file. DuckDB already runs the statement on every "
                "core: leave executor='thread'"
            )
        job_id = submit(body, name=name, task=task, args=args, executor="thread")
    except BaseException:
        con.close()
        raise
    if widget:
        show_in_notebook(job_id)
    return job_id


def run(
    ctx: TaskContext,
    con: duckdb.DuckDBPyConnection,
    sql: str,
    describe: Callable[[float], str],
    fetch: Callable[[duckdb.DuckDBPyConnection], T],
) -> T:
    """Run ``sql`` as the job's step 2: DuckDB's progress goes to ``ctx``; cancel interrupts it.

    ``describe(percent)`` words the status_info; ``fetch`` reads the statement's result.
    """
    con.execute("SET enable_progress_bar = true")
    con.execute("SET enable_progress_bar_print = false")  # keep the bar out of the task log
    ctx.check_cancelled()
    ctx.report(0.0, describe(0.0), RUNNING)
    poller = _Poller(ctx, con, describe)
    poller.start()
    try:
        return fetch(con.execute(sql))
    except duckdb.InterruptException:
        if ctx.cancelled:
            raise TaskCancelled(ctx.job_id) from None
        raise
    finally:
        poller.stop()


class _Poller(threading.Thread):
    """Samples ``query_progress()`` into the task; interrupts the query once cancel is asked.

    Percent never goes down (DuckDB's estimate can, between pipelines) and stays below
    100 until the job has finished its last step.
    """

    def __init__(
        self, ctx: TaskContext, con: duckdb.DuckDBPyConnection, describe: Callable[[float], str]
    ) -> None:
        super().__init__(name=f"raytha-nb-progress-{ctx.job_id[:8]}", daemon=True)
        self._ctx = ctx
        self._con = con
        self._describe = describe
        self._done = threading.Event()

    def run(self) -> None:
        best = 0.0
        while not self._done.wait(POLL_INTERVAL):
            if self._ctx.cancelled:
                # Repeat until the statement ends: a query that had not started yet when
                # the first interrupt came would otherwise run on.
                self._con.interrupt()
                continue
            try:
                percent = self._con.query_progress()
            except duckdb.Error:
                continue
            # 100% is reported when the statement has really ended (finalising may follow).
            if percent >= 0 and min(percent, 99.0) > best:
                best = min(percent, 99.0)
                self._ctx.report(best, self._describe(best))

    def stop(self) -> None:
        self._done.set()
        self.join()


__all__ = [
    "FINALISING",
    "PLANNING",
    "RUNNING",
    "Database",
    "check",
    "connect",
    "database_label",
    "first_value",
    "is_table_name",
    "literal",
    "option_name",
    "run",
    "single_statement",
    "staged",
    "start",
    "writable_target",
]
