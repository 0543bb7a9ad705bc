"""rnb.export against a bare DuckDB COPY and pandas ``to_csv``, in one run; cancel latency.

    python benchmarks/bench_export.py [--rows N] [--repeat R] [--cancel-runs C]

Builds N rows (bigint, double, varchar, timestamp) in a DuckDB file, then times the
same query exported to CSV and Parquet by ``rnb.export`` (call to committed result)
and by a bare ``COPY``, R runs each in alternating order, plus one pandas ``to_csv``.
Ratios use the best run of each (the machine is shared: the best run is the one least
disturbed by other processes); medians and CPU seconds (best) are printed too. Goals (issue 5):
rnb.export within 1.10x of bare DuckDB; CSV at least 8x faster than pandas.
Then C exports are cancelled mid-way; request -> ``cancelled`` latency p50 / max.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import raytha_nb as rnb  # after the path tweak that finds this checkout

BUILD = """
CREATE TABLE bench AS
SELECT range::BIGINT AS id,
       random() * 1000 AS amount,
       'customer_' || (range % 100000)::VARCHAR AS customer,
       TIMESTAMP '2024-01-01' + to_seconds(range) AS ts
FROM range({rows})
"""
QUERY = "SELECT * FROM bench"
#: Generated on the fly and far too big to finish: only ever cancelled.
ENDLESS = (
    "SELECT range AS id, random() AS amount, 'customer_' || range AS customer, "
    "TIMESTAMP '2024-01-01' + to_seconds(range) AS ts FROM range(5000000000)"
)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timed_cpu(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds (all threads): CPU time shows the work
    done even when other processes on a shared machine stretch the wall time."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def bare_copy(db: Path, out: Path, fmt: str) -> None:
    con = duckdb.connect(str(db))
    try:
        con.execute(f"COPY ({QUERY}) TO '{out}' (FORMAT {fmt})")
    finally:
        con.close()


def rnb_export(db: Path, out: Path) -> None:
    record = rnb.wait(rnb.export(QUERY, out, database=db), timeout=3600)
    if record.status is not rnb.TaskStatus.COMPLETE:
        raise RuntimeError(f"export ended {record.status.value}: {record.error_message}")


def cancel_latency(folder: Path, runs: int) -> list[float]:
    latencies = []
    for i in range(runs):
        out = folder / f"cancelled-{i}.csv"
        job = rnb.export(ENDLESS, out)
        deadline = time.monotonic() + 60
        while rnb.get_task(job).percent_complete <= 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.1 * (i % 4))  # cancel at different points of the write
        start = time.perf_counter()
        rnb.cancel(job)
        while not rnb.get_task(job).finished:
            time.sleep(0.001)
        latencies.append(time.perf_counter() - start)
        record = rnb.wait(job, timeout=30)
        if record.status is not rnb.TaskStatus.CANCELLED or any(folder.glob(f"*{out.name}")):
            raise RuntimeError(f"run {i}: {record.status.value}, or a partial file was left")
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=4, help="DuckDB runs per variant")
    parser.add_argument("--cancel-runs", type=int, default=10)
    parser.add_argument("--skip-pandas", action="store_true")
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rnb-bench-") as tmp:
        folder = Path(tmp)
        rnb.configure(folder / "tasks.duckdb")
        db = folder / "data.duckdb"
        con = duckdb.connect(str(db))
        build = timed(lambda: con.execute(BUILD.format(rows=opts.rows)))
        con.close()
        print(
            f"rows: {opts.rows:,} (bigint, double, varchar, timestamp); built in {build:.1f} s; "
            f"duckdb {duckdb.__version__}; {os.cpu_count()} cores; best of {opts.repeat}"
        )

        times: dict[tuple[str, str], list[float]] = {}
        cpus: dict[tuple[str, str], list[float]] = {}
        for run in range(opts.repeat):
            for fmt in ("csv", "parquet"):
                bare_out, rnb_out = folder / f"bare.{fmt}", folder / f"rnb.{fmt}"
                variants = {
                    "bare": lambda f=fmt, o=bare_out: bare_copy(db, o, f),
                    "rnb": lambda o=rnb_out: rnb_export(db, o),
                }
                for who in ("bare", "rnb") if run % 2 == 0 else ("rnb", "bare"):
                    wall, cpu = timed_cpu(variants[who])
                    times.setdefault((who, fmt), []).append(wall)
                    cpus.setdefault((who, fmt), []).append(cpu)
                if fmt == "csv" and bare_out.read_bytes() != rnb_out.read_bytes():
                    raise RuntimeError("rnb.export wrote a different CSV than bare COPY")
        best = {key: min(values) for key, values in times.items()}
        median = {key: statistics.median(values) for key, values in times.items()}
        for fmt in ("csv", "parquet"):
            ratio = best[("rnb", fmt)] / best[("bare", fmt)]
            print(
                f"{fmt:8} bare DuckDB COPY {best[('bare', fmt)]:6.2f} s | rnb.export "
                f"{best[('rnb', fmt)]:6.2f} s | rnb/bare {ratio:.2f}x (goal <= 1.10x) | "
                f"medians {median[('bare', fmt)]:.2f} / {median[('rnb', fmt)]:.2f} s | CPU "
                f"{min(cpus[('bare', fmt)]):.2f} / {min(cpus[('rnb', fmt)]):.2f} s"
            )

        if not opts.skip_pandas:
            con = duckdb.connect(str(db))
            frame = con.sql(QUERY).df()
            con.close()
            pandas_s = timed(lambda: frame.to_csv(folder / "pandas.csv", index=False))
            del frame
            speedup = pandas_s / best[("rnb", "csv")]
            print(
                f"csv      pandas to_csv    {pandas_s:6.2f} s | rnb.export "
                f"{best[('rnb', 'csv')]:6.2f} s | pandas/rnb {speedup:.1f}x (goal >= 8x)"
            )

        latencies = cancel_latency(folder, opts.cancel_runs)
        print(
            f"cancel latency (request -> cancelled, {len(latencies)} runs, large CSV export): "
            f"p50 {statistics.median(latencies) * 1000:.0f} ms, "
            f"max {max(latencies) * 1000:.0f} ms (goal < 500 ms)"
        )
        rnb.manager().shutdown()


if __name__ == "__main__":
    main()
