"""Fan-out (``rnb.map``) against its peers, measured in the same run.

    python benchmarks/bench_flows.py            # the sizes from issue #13
    python benchmarks/bench_flows.py --quick    # smaller, for a smoke run

1. ``rnb.map`` of N no-op items on worker threads, submitted -> every child and the
   group ``complete`` and stored (``wait_all``), vs ``ThreadPoolExecutor.map`` over the
   same items with as many threads (goal >= 0.5x its throughput), and vs the same pool
   plus the least a hand-rolled durable version stores: each task's row queued, then
   its end, in bare DuckDB (one commit per 2,000 ends: our publisher commits about
   as many per flush here);
2. if ``distributed`` imports: ``rnb.map(..., executor="dask")`` vs ``client.map`` +
   ``gather`` on the same LocalCluster (2 worker processes, 1 thread each).

Runs alternate (peer, ours, peer, ours ...) and the best of each counts: machines here
are shared and noisy, so read the ratios.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

import raytha_nb as rnb

WORKERS = 4


def _noop(item: Any) -> None:
    return None


def _pool(n: int) -> float:
    with ThreadPoolExecutor(WORKERS) as pool:
        start = time.perf_counter()
        list(pool.map(_noop, range(n)))
        return time.perf_counter() - start


def _noop_timed(item: int) -> tuple[int, float, float, str]:
    started = time.time()
    return item, started, time.time(), threading.current_thread().name


def _pool_durable(n: int, folder: Path) -> float:
    """The pool, and each task's row in DuckDB: queued (one INSERT), then its end."""
    path = folder / f"bare-{time.monotonic_ns()}.duckdb"
    db = duckdb.connect(str(path))
    db.execute(
        "CREATE TABLE tasks (id VARCHAR PRIMARY KEY, status VARCHAR, args VARCHAR, "
        "result VARCHAR, worker VARCHAR, created_at DOUBLE, started_at DOUBLE, "
        "completed_at DOUBLE)"
    )
    start = time.perf_counter()
    ids = [f"child-{i}" for i in range(n)]
    queued = pa.table({  # noqa: F841 - read by name in the SQL below
        "id": ids, "args": [str(i) for i in range(n)], "created_at": [time.time()] * n,
    })  # fmt: skip
    db.execute(
        "INSERT INTO tasks SELECT id, 'enqueued', args, NULL, NULL, created_at, NULL, NULL "
        "FROM queued"
    )
    with ThreadPoolExecutor(WORKERS) as pool:
        ends: list[tuple[int, float, float, str]] = []
        for end in pool.map(_noop_timed, range(n)):
            ends.append(end)
            if len(ends) == 2000 or end[0] == n - 1:
                index, started, completed, worker = zip(*ends)
                batch = pa.table({  # noqa: F841 - read by name in the SQL below
                    "id": [ids[i] for i in index], "started_at": started,
                    "completed_at": completed, "worker": worker,
                })  # fmt: skip
                db.execute("BEGIN")
                db.execute(
                    "UPDATE tasks SET status = 'complete', result = 'null', "
                    "worker = b.worker, started_at = b.started_at, "
                    "completed_at = b.completed_at FROM batch AS b WHERE tasks.id = b.id"
                )
                db.execute("COMMIT")
                ends = []
    elapsed = time.perf_counter() - start
    stored = db.execute("SELECT count(*) FROM tasks WHERE status = 'complete'").fetchone()
    db.close()
    assert stored == (n,), stored
    return elapsed


def _ours(n: int, **options: Any) -> float:
    start = time.perf_counter()
    group = rnb.map(_noop, range(n), show=False, **options)
    rnb.wait_all(timeout=600)  # the group and every child: final and stored
    elapsed = time.perf_counter() - start
    record = rnb.get_task(group)
    assert record.status is rnb.TaskStatus.COMPLETE, record
    return elapsed


def _stored(n: int) -> int:
    """Children stored complete (the check that 'durable' is true, not assumed)."""
    rows = rnb.task_store().sql(
        "SELECT count(*) FROM tasks WHERE group_id IS NOT NULL AND status = 'complete'"
    )
    return int(rows.fetchall()[0][0])


def _best(runs: int, *fns: Callable[[], float]) -> list[float]:
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            times[i].append(fn())
    return [min(t) for t in times]


def _line(what: str, n: int, peer: str, t_peer: float, t_ours: float, goal: str) -> None:
    print(
        f"{what} x{n}: {peer} {n / t_peer:,.0f}/s ({t_peer * 1e6 / n:.1f} us/task), "
        f"rnb.map {n / t_ours:,.0f}/s ({t_ours * 1e6 / n:.1f} us/task): "
        f"{t_peer / t_ours:.2f}x the peer's throughput ({goal})",
        flush=True,
    )


def threads(n: int, runs: int, folder: Path) -> None:
    _ours(1000)  # warm: worker threads, the store's tables
    t_pool, t_durable, t_ours = _best(
        runs, lambda: _pool(n), lambda: _pool_durable(n, folder), lambda: _ours(n)
    )
    _line("no-op map on 4 threads", n, "ThreadPoolExecutor.map", t_pool, t_ours, "goal >= 0.5x")
    _line(
        "no-op map on 4 threads", n, "ThreadPoolExecutor.map + its rows in bare DuckDB",
        t_durable, t_ours, "the durable peer",
    )  # fmt: skip


def dask(n: int, runs: int) -> None:
    try:
        import distributed
    except ImportError:
        print("dask: distributed is not installed, skipped")
        return
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = distributed.Client(cluster, set_as_default=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rnb.configure(Path(tmp) / "dask.duckdb", dask=client)

            def bare() -> float:
                start = time.perf_counter()
                client.gather(client.map(_noop, range(n), pure=False))
                return time.perf_counter() - start

            bare()
            _ours(100, executor="dask")
            t_bare, t_ours = _best(runs, bare, lambda: _ours(n, executor="dask"))
            _line("no-op map on Dask", n, "client.map", t_bare, t_ours, "same LocalCluster")
            rnb.manager().shutdown()
    finally:
        client.close()
        cluster.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    quick = parser.parse_args().quick
    sys.setswitchinterval(0.001)  # as in a kernel with raytha_nb loaded (magics.py)
    n, runs = (10_000, 2) if quick else (100_000, 3)
    with tempfile.TemporaryDirectory() as tmp:
        rnb.configure(Path(tmp) / "bench.duckdb", workers=WORKERS)
        threads(n, runs, Path(tmp))
        stored = _stored(n)
        print(f"stored complete children: {stored:,} (of {1000 + n * runs:,} mapped)")
        rnb.manager().shutdown()
    dask(500 if quick else 2_000, 2)  # a Dask task costs ~1000x a thread's: fewer


if __name__ == "__main__":
    main()
