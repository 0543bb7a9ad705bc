"""``export()``: write a query, table, file or frame to CSV / Parquet / JSON in the background.

DuckDB's own ``COPY`` does the writing, on the job's connection, so the output is
byte for byte what a bare ``COPY`` writes, at the same speed, with progress and cancel.
"""

from __future__ import annotations

import os
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from .._results import ResultFile, frame_library
from .._text import byte_size, count
from ..context import TaskContext
from . import _duckdb_job as job

#: Formats by file suffix (compression suffixes such as ``.gz`` are looked through).
SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".ndjson": "json",
    ".jsonl": "json",
}
FORMATS = ("csv", "parquet", "json")
_COMPRESSION_SUFFIXES = {".gz": "application/gzip", ".zst": "application/zstd"}
_MEDIA_TYPES = {
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
    "json": "application/x-ndjson",
}
#: COPY options that write a folder of files rather than one file.
_FOLDER_OPTIONS = {"partition_by", "per_thread_output", "file_size_bytes"}
#: File suffixes that make a string source a file to read rather than a table name.
_READABLE = (*SUFFIXES, ".gz", ".zst")


@dataclass
class Source:
    """A SELECT over what the user passed, with a label and its row count when known cheaply."""

    sql: str
    label: str
    rows: int | None = None
    table: str | None = None


def export(
    source: Any,
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    database: job.Database = None,
    name: str | None = None,
    executor: str = "thread",
    widget: bool = True,
    **options: Any,
) -> str:
    """Export ``source`` to the file ``path`` in the background; returns the job id.

    ``source``: a SQL query, a table name in ``database`` (a DuckDB file or connection),
    a path or glob of Parquet/CSV/JSON files, or a pandas / polars / pyarrow frame.
    ``format`` ("csv", "parquet", "json") defaults from the path's suffix; ``options``
    (``header``, ``delimiter``, ``compression``, ...) pass through to DuckDB's ``COPY``.
    The result is the written file (path, bytes, rows): ``rnb.get_task(id).result``.
    In a notebook the cell shows the job's progress widget (``widget=False``: not).
    """
    target = job.writable_target(path, "export")
    fmt = _format(target, format)
    options = {job.option_name(k, "export").lower(): v for k, v in options.items()}
    copy_options = _copy_options(fmt, target, options)
    con = job.connect(database, "export")
    try:
        src = _source(con, source, database)
        job.check(con, _copy(src.sql, target, copy_options), "export")
    except BaseException:
        con.close()
        raise
    media_type = _media_type(fmt, target, options)
    args = {
        "source": src.label,
        "path": str(target),
        "format": fmt,
        "database": job.database_label(database),
        "options": dict(options),
    }

    def body(ctx: TaskContext) -> ResultFile:
        with closing(con):
            ctx.report(0.0, f"planning the export of {src.label}", job.PLANNING)
            total = src.rows
            if total is None and src.table is not None:
                row = con.execute(f"SELECT count(*) FROM {src.table}").fetchone()
                total = int(row[0]) if row else None

            def describe(percent: float) -> str:
                if total:
                    done = int(total * percent / 100)
                    return f"writing {fmt.upper()}: about {done:,} of {total:,} rows"
                return f"writing {fmt.upper()} to {target.name}: {percent:.0f}%"

            with job.staged(target, ctx.job_id) as tmp:
                copy = _copy(src.sql, tmp, copy_options)
                rows = job.run(ctx, con, copy, describe, job.first_value)
                ctx.report(None, f"finalising {target.name}", job.FINALISING)
                ctx.check_cancelled()
            ctx.report(
                100.0,
                f"wrote {count(rows, 'row')} ({byte_size(target.stat().st_size)}) to {target}",
                job.FINALISING,
            )
            return ResultFile(target, rows=rows, media_type=media_type)

    return job.start(
        con,
        body,
        name=name or f"export {target.name}",
        task="export",
        args=args,
        executor=executor,
        widget=widget,
    )


def _format(target: Path, format: str | None) -> str:
    if format is not None:
        fmt = str(format).lower().lstrip(".")
        if fmt not in FORMATS:
            raise ValueError(f"export: unknown format {format!r}; use one of {', '.join(FORMATS)}")
        return fmt
    fmt_name = SUFFIXES.get(_data_suffix(target))
    if fmt_name is None:
        raise ValueError(
            f"export: cannot tell the format from the name {target.name!r}; end it in "
            f"{', '.join(sorted(SUFFIXES))} or pass format= one of {', '.join(FORMATS)}"
        )
    return fmt_name


def _data_suffix(target: Path) -> str:
    """The suffix that names the format: ``.tsv`` for ``out.tsv.gz``."""
    suffixes = [s.lower() for s in target.suffixes]
    while suffixes and suffixes[-1] in _COMPRESSION_SUFFIXES:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def _copy_options(fmt: str, target: Path, options: dict[str, Any]) -> str:
    """``FORMAT csv, HEADER true, ...`` for COPY, from the (lower-cased) keyword options."""
    opts = dict(options)
    for key in ("format", "use_tmp_file", *sorted(_FOLDER_OPTIONS)):
        if key in opts:
            hint = {
                "format": "pass format= to export()",
                "use_tmp_file": "export() already writes to a temporary file and renames it; "
                "drop this option",
            }.get(key, "export() writes one file; use duckdb's COPY directly for a folder of files")
            raise ValueError(f"export: the option {key!r} is not supported here; {hint}")
    if _data_suffix(target) == ".tsv" and fmt == "csv":
        opts.setdefault("delimiter", "\t")
    parts = [f"FORMAT {fmt}"]
    for key, value in opts.items():
        if isinstance(value, (list, tuple)) and key.startswith("force_"):
            columns = ", ".join('"' + str(v).replace('"', '""') + '"' for v in value)
            parts.append(f"{key.upper()} ({columns})")
        else:
            parts.append(f"{key.upper()} {job.literal(value)}")
    return ", ".join(parts)


def _copy(select: str, out: Path, options: str) -> str:
    return f"COPY ({select}) TO {job.literal(str(out))} ({options})"


def _source(con: duckdb.DuckDBPyConnection, source: Any, database: job.Database) -> Source:
    library = frame_library(source)
    if library is not None:
        con.register("rnb_source", source)
        rows = len(source)
        return Source("SELECT * FROM rnb_source", f"<{library} frame of {rows:,} rows>", rows=rows)
    if isinstance(source, os.PathLike) or (isinstance(source, str) and _looks_like_file(source)):
        text = os.fspath(source)
        return Source(f"SELECT * FROM {job.literal(text)}", text)
    if not isinstance(source, str):
        raise TypeError(
            "export: source must be a SQL query, a table name, a file path or a "
            f"pandas / polars / pyarrow frame, not {type(source).__name__}"
        )
    if job.is_table_name(source):
        if database is None:
            raise ValueError(
                f"export: {source!r} looks like a table name, but no database= was given; "
                "pass database= the DuckDB file (or connection) that holds it, or a full query"
            )
        table = source.strip()
        return Source(f"SELECT * FROM {table}", table, table=table)
    statement = job.single_statement(source, "export")
    if statement.type is not duckdb.StatementType.SELECT:
        raise ValueError(
            f"export: the source must be a query that returns rows (SELECT ...), not a "
            f"{statement.type.name} statement; run it with rnb.sql() first"
        )
    query = statement.query.strip().rstrip(";")
    return Source(query, query)


def _looks_like_file(text: str) -> bool:
    """A path or glob of data files (``events/*.parquet``), not a query or a table name."""
    stripped = text.strip()
    if any(c.isspace() for c in stripped):
        return False
    return stripped.lower().endswith(_READABLE) or Path(stripped).expanduser().is_file()


def _media_type(fmt: str, target: Path, options: dict[str, Any]) -> str:
    compression = str(options.get("compression", "")).lower()
    if compression in ("gzip", "zstd") and fmt != "parquet":
        return _COMPRESSION_SUFFIXES[".gz" if compression == "gzip" else ".zst"]
    if fmt != "parquet" and target.suffix.lower() in _COMPRESSION_SUFFIXES:
        return _COMPRESSION_SUFFIXES[target.suffix.lower()]
    if fmt == "json" and options.get("array"):
        return "application/json"
    return _MEDIA_TYPES[fmt]


__all__ = ["FORMATS", "SUFFIXES", "export"]
