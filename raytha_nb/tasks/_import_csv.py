"""``import_csv()``: load a CSV file into a DuckDB table; rows that fail go to a rejects CSV.

DuckDB's reject tables (``store_rejects``) collect the rows that do not parse; the job
writes them to a CSV file that becomes its result, with their count, like Raytha's
import that hands back an error file. The load is one transaction: a cancelled or
failed import leaves the table as it was.
"""

from __future__ import annotations

import os
from contextlib import closing
from pathlib import Path
from typing import Any

import duckdb

from .._manager import manager
from .._results import ResultFile
from .._text import byte_size
from ..context import TaskContext
from . import _duckdb_job as job

MODES = ("append", "replace")
#: The rejects file: one row per rejected line (DuckDB records one row per error in it).
REJECTS_QUERY = """
    SELECT line, any_value(csv_line) AS csv_line,
           string_agg(error_type, '; ' ORDER BY column_idx) AS error_type,
           string_agg(column_name, '; ' ORDER BY column_idx) AS column_name,
           string_agg(error_message, '; ' ORDER BY column_idx) AS error_message
    FROM rnb_reject_errors GROUP BY line ORDER BY line
"""


def import_csv(
    path: str | os.PathLike[str],
    table: str,
    *,
    database: job.Database,
    mode: str = "append",
    rejects: str | os.PathLike[str] | None = None,
    name: str | None = None,
    executor: str = "thread",
    widget: bool = True,
    **options: Any,
) -> str:
    """Load the CSV file ``path`` into ``table`` of ``database`` in the background.

    ``mode="append"`` adds rows (creating the table if missing; an existing table's
    column types apply, so values that do not fit them are rejected); ``"replace"``
    recreates it from the file. ``options`` pass through to DuckDB's ``read_csv``
    (``delim``, ``header``, ``types`` ...). The result is the rejects CSV file
    (``rejects``, default in the results folder) with the number of rejected rows.
    In a notebook the cell shows the job's progress widget (``widget=False``: not).
    """
    source = Path(path).expanduser().resolve()
    if not source.is_file():
        raise FileNotFoundError(f"import_csv: no such file: {source}")
    if mode not in MODES:
        raise ValueError(f"import_csv: mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not isinstance(table, str) or not job.is_table_name(table):
        raise ValueError(
            f"import_csv: {table!r} is not a table name (letters, digits and _, optionally "
            "schema-qualified; quote others like '\"my table\"')"
        )
    if database is None:
        raise ValueError(
            "import_csv: database= is required: the DuckDB file (or connection) to load into"
        )
    rejects_path = None if rejects is None else job.writable_target(rejects, "import_csv")
    con = job.connect(database, "import_csv", create=True)
    try:
        columns = _columns(con, table)
        read_options = {job.option_name(k, "import_csv").lower(): v for k, v in options.items()}
        if (
            columns is not None
            and mode == "append"
            and not {"columns", "types"} & set(read_options)
        ):
            read_options["columns"] = columns
            read_options.setdefault("header", True)  # the sniffer cannot judge given columns
        read = _read_csv(source, read_options)
        if mode == "replace":
            load = f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {read}"
        elif columns is None:
            load = f"CREATE TABLE {table} AS SELECT * FROM {read}"
        else:
            load = f"INSERT INTO {table} SELECT * FROM {read}"
        job.check(con, load, "import_csv")
    except BaseException:
        con.close()
        raise
    args = {
        "path": str(source),
        "table": table,
        "database": job.database_label(database),
        "mode": mode,
        "rejects": None if rejects_path is None else str(rejects_path),
        "options": options,
    }
    size = source.stat().st_size

    def describe(percent: float) -> str:
        return f"loading {source.name} into {table}: about {percent:.0f}% of {byte_size(size)}"

    def body(ctx: TaskContext) -> ResultFile:
        with closing(con):
            ctx.report(0.0, f"planning the import of {source.name}", job.PLANNING)
            out = rejects_path or manager().backend.results_dir / f"{ctx.job_id}.rejects.csv"
            out.parent.mkdir(parents=True, exist_ok=True)
            con.execute("BEGIN")
            try:
                loaded = job.run(ctx, con, load, describe, job.first_value)
                ctx.report(None, "finalising: writing the rejects file", job.FINALISING)
                with job.staged(out, ctx.job_id) as tmp:
                    rejected = _write_rejects(con, tmp)
                    ctx.check_cancelled()
                    con.execute("COMMIT")
            except BaseException:
                _rollback(con)
                raise
            for line in _sample_rejects(con):
                ctx.log(line)
            ctx.report(
                100.0,
                f"loaded {loaded:,} rows into {table}; {rejected:,} rejected (in {out.name})",
                job.FINALISING,
            )
            return ResultFile(out, rows=rejected, media_type="text/csv")

    return job.start(
        con,
        body,
        name=name or f"import {source.name}",
        task="import_csv",
        args=args,
        executor=executor,
        widget=widget,
    )


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str] | None:
    """The table's column names and types, or None if it does not exist."""
    try:
        rows = con.execute(f"DESCRIBE {table}").fetchall()
    except duckdb.CatalogException:
        return None
    return {str(r[0]): str(r[1]) for r in rows}


def _read_csv(source: Path, options: dict[str, Any]) -> str:
    # The reject tables are temporary, on this job's own connection.
    params = [
        job.literal(str(source)),
        "store_rejects = true",
        "rejects_table = 'rnb_reject_errors'",
        "rejects_scan = 'rnb_reject_scans'",
    ]
    params += [f"{key} = {job.literal(value)}" for key, value in options.items()]
    return f"read_csv({', '.join(params)})"


def _write_rejects(con: duckdb.DuckDBPyConnection, out: Path) -> int:
    copy = f"COPY ({REJECTS_QUERY}) TO {job.literal(str(out))} (FORMAT csv, HEADER true)"
    return job.first_value(con.execute(copy))


def _sample_rejects(con: duckdb.DuckDBPyConnection, limit: int = 20) -> list[str]:
    rows = con.execute(
        f"SELECT line, error_type, error_message FROM ({REJECTS_QUERY}) LIMIT {limit}"
    ).fetchall()
    return [f"rejected line {r[0]}: {r[1]}: {r[2]}" for r in rows]


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass  # the failed statement already ended the transaction


__all__ = ["MODES", "import_csv"]
