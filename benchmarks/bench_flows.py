"""Fan-out (``rnb.map``) against its peers, measured in the same run.

    python benchmarks/bench_flows.py            # the sizes from issue #13
    python benchmarks/bench_flows.py --quick    # smaller, for a smoke run

1. ``rnb.map`` of N no-op items on worker threads, submitted -> every child and the
   group ``complete`` and stored (``wait_all``), vs ``ThreadPoolExecutor.map`` over the
   same items with as many threads (goal >= 0.5x its throughput);
2. if ``distributed`` imports: ``rnb.map(..., executor="dask")`` vs ``client.map`` +
   ``gather`` on the same LocalCluster (2 worker processes, 1 thread each).

Runs alternate (peer, ours, peer, ours ...) and the best of each counts: machines here
are shared and noisy, so read the ratios.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import raytha_nb as rnb

WORKERS = 4


def _noop(item: Any) -> None:
    return None


def _pool(n: int) -> float:
    with ThreadPoolExecutor(WORKERS) as pool:
        start = time.perf_counter()
        list(pool.map(_noop, range(n)))
        return time.perf_counter() - start


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


def threads(n: int, runs: int) -> None:
    _ours(1000)  # warm: worker threads, the store's tables
    t_pool, t_ours = _best(runs, lambda: _pool(n), lambda: _ours(n))
    _line("no-op map on 4 threads", n, "ThreadPoolExecutor.map", t_pool, t_ours, "goal >= 0.5x")


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
        threads(n, runs)
        stored = _stored(n)
        print(f"stored complete children: {stored:,} (of {1000 + n * runs:,} mapped)")
        rnb.manager().shutdown()
    dask(500 if quick else 2_000, 2)  # a Dask task costs ~1000x a thread's: fewer


if __name__ == "__main__":
    main()
