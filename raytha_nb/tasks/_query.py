"""``sql()``: run a long DuckDB query in the background; its table is the task's result.

A query's rows are written by DuckDB as Parquet into the store's results folder, so
``rnb.result(job_id)`` loads them as a frame here or in any other process.
"""

from __future__ import annotations

from contextlib import closing
from typing import Any

import duckdb

from .._manager import manager
from .._results import LIBRARIES, ResultFile, load
from .._text import count
from ..context import TaskContext
from . import _duckdb_job as job


def sql(
    query: str,
    *,
    database: job.Database = None,
    load_as: str = "pandas",
    name: str | None = None,
    executor: str = "thread",
    widget: bool = True,
) -> str:
    """Run one SQL statement in the background on ``database``; returns the job id.

    ``database``: a DuckDB file or connection (None: an in-memory database, for queries
    over Parquet/CSV/JSON files). A query's rows become the result, stored as Parquet
    and loaded by ``rnb.result(job_id)`` as a ``load_as`` frame ("pandas", "polars",
    "pyarrow"); other statements (CREATE TABLE AS, INSERT ...) return what DuckDB returns.
    In a notebook the cell shows the job's progress widget (``widget=False``: not).
    """
    if load_as not in LIBRARIES:
        raise ValueError(f"sql: load_as must be one of {', '.join(LIBRARIES)}, not {load_as!r}")
    statement = job.single_statement(query, "sql")
    text = statement.query.strip().rstrip(";")
    returns_rows = statement.type is duckdb.StatementType.SELECT
    con = job.connect(database, "sql")
    try:
        job.check(con, text, "sql")
    except BaseException:
        con.close()
        raise
    args = {"query": text, "database": job.database_label(database), "load_as": load_as}
    kind = statement.type.name.lower()

    def body(ctx: TaskContext) -> Any:
        with closing(con):
            ctx.report(0.0, f"planning the {kind} statement", job.PLANNING)
            if not returns_rows:
                value = job.run(ctx, con, text, _describe(kind), _fetch(load_as))
                ctx.report(100.0, f"{kind} statement done", job.FINALISING)
                return value
            results = manager().backend.results_dir
            results.mkdir(parents=True, exist_ok=True)
            out = results / f"{ctx.job_id}.parquet"
            with job.staged(out, ctx.job_id) as tmp:
                copy = f"COPY ({text}) TO {job.literal(str(tmp))} (FORMAT parquet)"
                rows = job.run(ctx, con, copy, _describe("query"), job.first_value)
                ctx.report(None, "finalising the result file", job.FINALISING)
                ctx.check_cancelled()
            ctx.report(100.0, count(rows, "row"), job.FINALISING)
            return ResultFile(out, rows=rows, load_as=load_as)

    return job.start(
        con, body, name=name or _name(text), task="sql", args=args, executor=executor, widget=widget
    )


def _describe(kind: str) -> Any:
    return lambda percent: f"running the {kind}: {percent:.0f}%"


def _fetch(load_as: str) -> Any:
    def fetch(result: duckdb.DuckDBPyConnection) -> Any:
        return load(result, load_as) if result.description else None

    return fetch


def _name(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return "sql " + (flat if len(flat) <= limit else flat[: limit - 1] + "…")


__all__ = ["sql"]
