"""Data jobs on real DuckDB files: export, background SQL and CSV import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import polars as pl
import pytest

import raytha_nb as rnb

ROWS = 5_000
QUERY = (
    "SELECT range AS id, range * 1.5 AS amount, 'name ' || range AS label, "
    "TIMESTAMP '2024-01-01' + to_seconds(range) AS ts FROM range({n})"
)
#: Big enough that exporting it takes seconds, so progress and cancel can be watched.
HUGE = QUERY.format(n=200_000_000)
FORMAT_SUFFIX = {"csv": "csv", "parquet": "parquet", "json": "ndjson"}


@pytest.fixture
def data_db(tmp_path: Path) -> Path:
    """A DuckDB file with a table ``items`` of ROWS rows."""
    path = tmp_path / "data.duckdb"
    con = duckdb.connect(str(path))
    con.execute(f"CREATE TABLE items AS {QUERY.format(n=ROWS)}")
    con.close()
    return path


def bare_copy(
    select: str, out: Path, options: str, *, database: Path | None = None, **frames: Any
) -> None:
    """What a plain DuckDB COPY writes, for comparison."""
    con = duckdb.connect(str(database) if database else ":memory:")
    for name, frame in frames.items():
        con.register(name, frame)
    con.execute(f"COPY ({select}) TO '{out}' ({options})")
    con.close()


def finished(job: str, timeout: float = 60) -> rnb.TaskRecord:
    record = rnb.wait(job, timeout=timeout)
    assert record.status is not rnb.TaskStatus.ERROR, record.traceback
    return record


# -- export -----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
@pytest.mark.parametrize("kind", ["query", "table", "file", "pandas", "polars", "pyarrow"])
def test_export_writes_what_bare_copy_writes(
    mgr: rnb.TaskManager, data_db: Path, tmp_path: Path, fmt: str, kind: str
) -> None:
    select = QUERY.format(n=ROWS)
    reference = duckdb.connect().sql(select).to_arrow_table()
    frames: dict[str, Any] = {}
    database: Path | None = None
    if kind == "query":
        source: Any = select
    elif kind == "table":
        source, database, select = "items", data_db, "SELECT * FROM items"
    elif kind == "file":
        source = tmp_path / "input.parquet"
        bare_copy(QUERY.format(n=ROWS), source, "FORMAT parquet")
        select = f"SELECT * FROM '{source}'"
    else:
        source = {"pandas": reference.to_pandas(), "polars": pl.from_arrow(reference)}.get(
            kind, reference
        )
        frames, select = {"frame": source}, "SELECT * FROM frame"
    out = tmp_path / f"out.{FORMAT_SUFFIX[fmt]}"
    job = rnb.export(source, out, database=database)
    record = finished(job)

    expected = tmp_path / f"expected.{FORMAT_SUFFIX[fmt]}"
    bare_copy(select, expected, f"FORMAT {fmt}", database=database, **frames)
    assert record.status is rnb.TaskStatus.COMPLETE
    assert out.read_bytes() == expected.read_bytes()
    assert record.result["rows"] == ROWS
    assert record.result["bytes"] == out.stat().st_size
    assert record.result["path"] == str(out)
    assert rnb.result(job) == out
    assert record.args["format"] == fmt
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".rnb-")) == []


def test_export_passes_csv_options_to_copy(mgr: rnb.TaskManager, tmp_path: Path) -> None:
    select = QUERY.format(n=ROWS)
    out = tmp_path / "out.csv.gz"
    job = rnb.export(select, out, header=False, delimiter="|", quote="'")
    record = finished(job)
    expected = tmp_path / "expected.csv.gz"
    bare_copy(select, expected, "FORMAT csv, HEADER false, DELIMITER '|', QUOTE ''''")
    assert out.read_bytes() == expected.read_bytes()
    assert record.result["media_type"] == "application/gzip"
    con = duckdb.connect()
    first = con.execute(f"SELECT * FROM read_csv('{out}', header=false, delim='|')").fetchone()
    assert first is not None and first[2] == "name 0"


def test_export_from_a_glob_of_files(mgr: rnb.TaskManager, tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    parts.mkdir()
    for i in range(2):
        bare_copy(QUERY.format(n=ROWS), parts / f"part-{i}.parquet", "FORMAT parquet")
    job = rnb.export(f"{parts}/*.parquet", tmp_path / "all.csv")
    record = finished(job)
    assert record.result["rows"] == 2 * ROWS
    assert record.args["source"] == f"{parts}/*.parquet"


def test_export_from_a_notebook_connection(mgr: rnb.TaskManager, tmp_path: Path) -> None:
    con = duckdb.connect()
    con.execute(f"CREATE TABLE items AS {QUERY.format(n=ROWS)}")
    job = rnb.export("SELECT id, label FROM items WHERE id < 10", tmp_path / "x.csv", database=con)
    assert finished(job).result["rows"] == 10
    # The notebook's connection stays usable while and after the job ran on a cursor of it.
    assert con.execute("SELECT count(*) FROM items").fetchone() == (ROWS,)


def test_progress_rises_and_ends_at_100(mgr: rnb.TaskManager, tmp_path: Path) -> None:
    path = tmp_path / "big.duckdb"
    con = duckdb.connect(str(path))
    con.execute(f"CREATE TABLE big AS {QUERY.format(n=4_000_000)}")
    con.close()
    job = rnb.export("big", tmp_path / "big.csv", database=path)
    samples: list[tuple[int, float, str | None]] = []
    deadline = time.monotonic() + 120
    while not (record := rnb.get_task(job)).finished and time.monotonic() < deadline:
        samples.append((record.task_step, record.percent_complete, record.status_info))
        time.sleep(0.02)
    assert record.status is rnb.TaskStatus.COMPLETE, record.traceback
    assert record.percent_complete == 100.0 and record.task_step == 3
    percents = [p for _, p, _ in samples]
    assert percents == sorted(percents), "progress went backwards"
    running = [(p, info) for step, p, info in samples if step == 2 and 0 < p < 100]
    assert len({p for p, _ in running}) >= 3, samples
    assert any(info and "of 4,000,000 rows" in info for _, info in running)
    rnb.wait(job, timeout=10)  # the final state is committed, so history holds it
    stored = [e["percent_complete"] for e in rnb.history(job)]
    assert stored == sorted(stored) and stored[-1] == 100.0


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_cancel_mid_export_stops_fast_and_leaves_no_file(
    mgr: rnb.TaskManager, tmp_path: Path, fmt: str
) -> None:
    """Uncancelled, this export runs for ~40 s; cancel must interrupt the query itself.
    The 0.5 s latency goal is measured (p50/max) by benchmarks/bench_export.py, not
    asserted here: a timing assertion on this shared 2-core machine fails at random."""
    folder = tmp_path / "out"
    folder.mkdir()
    job = rnb.export(HUGE, folder / f"huge.{fmt}")
    deadline = time.monotonic() + 60
    while rnb.get_task(job).percent_complete < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rnb.get_task(job).status is rnb.TaskStatus.PROCESSING
    assert any(p.name.startswith(".rnb-") for p in folder.iterdir()), "no partial file yet"
    start = time.monotonic()
    assert rnb.cancel(job)
    while not rnb.get_task(job).finished and time.monotonic() - start < 5:
        time.sleep(0.002)
    elapsed = time.monotonic() - start
    record = rnb.wait(job, timeout=10)
    assert record.status is rnb.TaskStatus.CANCELLED
    assert elapsed < 5, f"cancel took {elapsed:.3f}s: the query was not interrupted"
    assert list(folder.iterdir()) == [], "a partial file was left behind"


def test_a_job_failing_at_run_time_leaves_no_file(mgr: rnb.TaskManager, tmp_path: Path) -> None:
    # Binds fine (so it passes the up-front check) but fails on row 500,000.
    query = (
        "SELECT CAST(CASE WHEN range = 500000 THEN 'x' ELSE range::VARCHAR END AS INTEGER) v "
        "FROM range(1000000)"
    )
    folder = tmp_path / "out"
    folder.mkdir()
    job = rnb.export(query, folder / "out.csv")
    record = rnb.wait(job, timeout=60)
    assert record.status is rnb.TaskStatus.ERROR
    assert "Conversion Error" in (record.error_message or "")
    assert list(folder.iterdir()) == []


def _small_csv(tmp: Path) -> Path:
    path = tmp.parent / "small.csv"  # beside the folder that must stay empty
    path.write_text("a,b\n1,x\n")
    return path


def _bad_inputs(tmp: Path, db: Path) -> list[tuple[Callable[[], str], type[Exception], str]]:
    good = QUERY.format(n=10)
    return [
        (lambda: rnb.export("SELEC 1", tmp / "x.csv"), ValueError, "does not parse"),
        (lambda: rnb.export("SELECT * FROM nosuch", tmp / "x.csv", database=db), ValueError,
         "Tables and views here: items"),
        # Not a table: no list of tables as if it were.
        (lambda: rnb.sql("SELECT sume(1)", database=db), ValueError, "sume does not exist"),
        (lambda: rnb.export(good, tmp / "x.csv", use_tmp_file=True), ValueError,
         "already writes to a temporary file"),
        (lambda: rnb.export(good, tmp / "x.csv", compression_level=float("nan")), ValueError,
         "give a finite number"),
        (lambda: rnb.export("orders", tmp / "x.csv", database=db), ValueError,
         "orders does not exist"),
        (lambda: rnb.export("items", tmp / "x.csv"), ValueError, "no database= was given"),
        (lambda: rnb.export(str(tmp / "missing" / "*.parquet"), tmp / "x.csv"), FileNotFoundError,
         "No files found"),
        (lambda: rnb.export(good, tmp / "x.xlsx"), ValueError, "cannot tell the format"),
        (lambda: rnb.export(good, tmp / "x.csv", format="xml"), ValueError, "unknown format 'xml'"),
        (lambda: rnb.export(good, tmp / "nodir" / "x.csv"), FileNotFoundError,
         "does not exist; create it"),
        (lambda: rnb.export(good, tmp), IsADirectoryError, "is a folder"),
        (lambda: rnb.export(good, tmp / "x.csv", bogus=1), ValueError,
         'Unrecognized option "bogus"'),
        (lambda: rnb.export(good, tmp / "x.csv", partition_by="id"), ValueError, "writes one file"),
        (lambda: rnb.export("CREATE TABLE t (a INT)", tmp / "x.csv"), ValueError, "returns rows"),
        (lambda: rnb.export(42, tmp / "x.csv"), TypeError, "not int"),
        (lambda: rnb.export(good, tmp / "x.csv", database=tmp / "nope.duckdb"), FileNotFoundError,
         "no DuckDB database"),
        (lambda: rnb.sql("SELECT 1; SELECT 2"), ValueError, "expected one SQL statement, got 2"),
        (lambda: rnb.sql("SELECT * FROM items", load_as="numpy"), ValueError, "load_as must be"),
        (lambda: rnb.sql("SELECT * FROM nosuch", database=db), ValueError, "nosuch does not exist"),
        (lambda: rnb.import_csv(tmp / "none.csv", "t", database=db), FileNotFoundError,
         "no such file"),
        (lambda: rnb.import_csv(_small_csv(tmp), "t", database=tmp / "no" / "t.duckdb"),
         FileNotFoundError, "create the folder"),
    ]  # fmt: skip


def test_bad_input_is_refused_before_a_task_starts(
    mgr: rnb.TaskManager, tmp_path: Path, data_db: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    for call, error, message in _bad_inputs(work, data_db):
        with pytest.raises(error, match=None) as info:
            call()
        assert message in str(info.value), str(info.value)
    assert rnb.list_tasks() == []
    assert list(work.iterdir()) == []


# -- sql ----------------------------------------------------------------------------------
def test_sql_result_loads_as_a_frame_in_another_process(
    mgr: rnb.TaskManager, data_db: Path, db_path: Path
) -> None:
    query = (
        "SELECT id % 7 AS k, count(*) AS n, sum(amount) AS total FROM items GROUP BY 1 ORDER BY 1"
    )
    job = rnb.sql(query, database=data_db)
    record = finished(job)
    assert record.task == "sql" and record.result["rows"] == 7
    here = rnb.result(job)
    assert isinstance(here, pd.DataFrame)
    expected = duckdb.connect(str(data_db)).execute(query).df()
    pd.testing.assert_frame_equal(here, expected)
    mgr.shutdown()  # release the store file, as a finished notebook would

    code = (
        "import json, sys, raytha_nb as rnb\n"
        "frame = rnb.result(sys.argv[1])\n"
        "print(json.dumps({'type': type(frame).__name__, 'rows': frame.to_dict('records')}))\n"
    )
    env = {**os.environ, "RAYTHA_NB_DB": str(db_path)}
    proc = subprocess.run(
        [sys.executable, "-c", code, job], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout)
    assert loaded["type"] == "DataFrame"
    assert loaded["rows"] == expected.to_dict("records")


def test_sql_over_files_as_polars_and_statements_without_rows(
    mgr: rnb.TaskManager, tmp_path: Path, data_db: Path
) -> None:
    parquet = tmp_path / "items.parquet"
    bare_copy(QUERY.format(n=ROWS), parquet, "FORMAT parquet")
    job = rnb.sql(f"SELECT max(id) AS top FROM '{parquet}'", load_as="polars")
    frame = rnb.result(job, timeout=60)
    assert isinstance(frame, pl.DataFrame) and frame["top"].to_list() == [ROWS - 1]

    job = rnb.sql("CREATE TABLE evens AS SELECT * FROM items WHERE id % 2 = 0", database=data_db)
    finished(job)
    assert duckdb.connect(str(data_db)).execute("SELECT count(*) FROM evens").fetchone() == (
        ROWS // 2,
    )


def test_sql_cancel_interrupts_the_query(mgr: rnb.TaskManager) -> None:
    job = rnb.sql("SELECT sum(hash(a.range * b.range)) FROM range(100000) a, range(100000) b")
    deadline = time.monotonic() + 30
    while rnb.get_task(job).status is not rnb.TaskStatus.PROCESSING and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    start = time.monotonic()
    rnb.cancel(job)
    assert rnb.wait(job, timeout=10).status is rnb.TaskStatus.CANCELLED
    # Minutes of work uncancelled; the latency goal is measured in bench_export.py.
    assert time.monotonic() - start < 5
    assert list(mgr.backend.results_dir.glob(f"*{job[:8]}*")) == []


# -- import_csv ---------------------------------------------------------------------------
def _write_csv(path: Path, good: int) -> None:
    lines = ["id,name,amount"]
    lines += [f"{i},n{i},{i * 0.5}" for i in range(good)]
    lines.insert(101, "x,not a number,1.0")  # id is not an integer
    lines.insert(202, "7,too,many,columns")
    lines.insert(303, "8,missing")
    lines.insert(404, "9,n9,abc")  # amount is not a number
    path.write_text("\n".join(lines) + "\n")


def test_import_csv_loads_good_rows_and_returns_the_rejects(
    mgr: rnb.TaskManager, tmp_path: Path
) -> None:
    csv = tmp_path / "people.csv"
    _write_csv(csv, 1_000)
    db = tmp_path / "target.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE people (id INTEGER, name VARCHAR, amount DOUBLE)")
    con.execute("INSERT INTO people VALUES (-1, 'before', 0)")
    con.close()

    job = rnb.import_csv(csv, "people", database=db, mode="append")
    record = finished(job)
    assert record.status is rnb.TaskStatus.COMPLETE
    assert record.result["rows"] == 4
    assert "loaded 1,000 rows into people; 4 rejected" in (record.status_info or "")
    rejects = rnb.result(job)
    assert isinstance(rejects, Path) and rejects.parent == mgr.backend.results_dir
    bad = (
        duckdb.connect().execute(f"SELECT line, csv_line FROM '{rejects}' ORDER BY line").fetchall()
    )
    assert bad == [
        (102, "x,not a number,1.0"),
        (203, "7,too,many,columns"),
        (304, "8,missing"),
        (405, "9,n9,abc"),
    ]
    assert any("rejected line 102" in line.text for line in rnb.logs(job))
    con = duckdb.connect(str(db))
    assert con.execute("SELECT count(*), min(id) FROM people").fetchone() == (1_001, -1)
    con.close()

    # replace: the table is rebuilt from the file alone; the rejects go where asked.
    mine = tmp_path / "rejects.csv"
    job = rnb.import_csv(
        csv, "people", database=db, mode="replace", rejects=mine,
        types={"id": "INTEGER", "amount": "DOUBLE"},
    )  # fmt: skip
    record = finished(job)
    assert record.result["path"] == str(mine) and record.result["rows"] == 4
    con = duckdb.connect(str(db))
    assert con.execute("SELECT count(*), min(id) FROM people").fetchone() == (1_000, 0)


def test_import_csv_into_a_new_table_with_a_clean_file(
    mgr: rnb.TaskManager, tmp_path: Path
) -> None:
    csv = tmp_path / "clean.csv"
    csv.write_text("a,b\n1,x\n2,y\n")
    job = rnb.import_csv(csv, "fresh", database=tmp_path / "new.duckdb")
    assert finished(job).result["rows"] == 0
    rows = duckdb.connect(str(tmp_path / "new.duckdb")).execute("FROM fresh ORDER BY a").fetchall()
    assert rows == [(1, "x"), (2, "y")]


def test_cancelled_import_leaves_the_table_unchanged(mgr: rnb.TaskManager, tmp_path: Path) -> None:
    csv = tmp_path / "big.csv"
    bare_copy(QUERY.format(n=6_000_000), csv, "FORMAT csv")
    db = tmp_path / "t.duckdb"
    duckdb.connect(str(db)).execute(
        "CREATE TABLE t AS SELECT * FROM read_csv(?) LIMIT 3", [str(csv)]
    ).close()
    job = rnb.import_csv(csv, "t", database=db)
    deadline = time.monotonic() + 60
    while rnb.get_task(job).percent_complete < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    start = time.monotonic()
    rnb.cancel(job)
    assert rnb.wait(job, timeout=10).status is rnb.TaskStatus.CANCELLED  # not complete
    assert time.monotonic() - start < 5
    assert duckdb.connect(str(db)).execute("SELECT count(*) FROM t").fetchone() == (3,)
    assert list(mgr.backend.results_dir.glob("*rejects*")) == []
