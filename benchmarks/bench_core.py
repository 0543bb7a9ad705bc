"""Core engine benchmarks, each against a peer measured in the same run.

    python benchmarks/bench_core.py            # full sizes from the issue
    python benchmarks/bench_core.py --quick    # smaller sizes, for a smoke run

Machines here are shared and noisy: read the ratios, not the absolute times.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from tqdm import tqdm

import raytha_nb as rnb
from raytha_nb.backend import EmbeddedBackend
from raytha_nb.model import TaskQuery


def best_of(runs: int, fn: Any) -> float:
    return min(fn() for _ in range(runs))


def progress_overhead(n: int, manager: rnb.TaskManager) -> None:
    def bare() -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            pass
        return time.perf_counter() - t0

    def with_tqdm() -> float:
        t0 = time.perf_counter()
        for _ in tqdm(range(n), file=io.StringIO(), mininterval=0.1):
            pass
        return time.perf_counter() - t0

    def tqdm_update() -> float:
        bar = tqdm(total=n, file=io.StringIO(), mininterval=0.1)
        t0 = time.perf_counter()
        for _ in range(n):
            bar.update(1)
        elapsed = time.perf_counter() - t0
        bar.close()
        return elapsed

    def in_task(body: Any) -> float:
        return float(manager.result(manager.submit(body, name="bench", task="bench"), timeout=None))

    def track_body(ctx: rnb.TaskContext) -> float:
        t0 = time.perf_counter()
        for _ in rnb.track(range(n)):
            pass
        return time.perf_counter() - t0

    def report_body(ctx: rnb.TaskContext) -> float:
        report = ctx.report
        scale = 100.0 / n
        t0 = time.perf_counter()
        for i in range(n):
            report(i * scale)
        return time.perf_counter() - t0

    def bare_loop_body(ctx: rnb.TaskContext) -> float:
        scale = 100.0 / n
        t0 = time.perf_counter()
        for i in range(n):
            i * scale
        return time.perf_counter() - t0

    runs = 3
    t_bare = best_of(runs, bare)
    t_tqdm = best_of(runs, with_tqdm)
    t_track = best_of(runs, lambda: in_task(track_body))
    t_bare_task = best_of(runs, lambda: in_task(bare_loop_body))
    t_update = best_of(runs, tqdm_update)
    t_report = best_of(runs, lambda: in_task(report_body))

    def ns(t: float) -> float:
        return t / n * 1e9

    over_tqdm, over_track = ns(t_tqdm - t_bare), ns(t_track - t_bare)
    print(f"\n## Progress overhead per iteration ({n:,} iterations, best of {runs})")
    print(f"  bare loop                 {ns(t_bare):6.1f} ns/it")
    print(f"  tqdm(range)               {ns(t_tqdm):6.1f} ns/it   overhead {over_tqdm:6.1f} ns")
    print(f"  rnb.track(range) in task  {ns(t_track):6.1f} ns/it   overhead {over_track:6.1f} ns")
    print(f"  -> track overhead / tqdm overhead = {over_track / over_tqdm:.2f}  (goal <= 0.50)")
    over_update = ns(t_update - t_bare)
    over_report = ns(t_report - t_bare_task)
    print(f"  tqdm.update(1)            {ns(t_update):6.1f} ns/it   overhead {over_update:6.1f} ns")
    print(f"  ctx.report(pct) in task   {ns(t_report):6.1f} ns/it   overhead {over_report:6.1f} ns")
    print(
        f"  -> report overhead / update overhead = {over_report / over_update:.2f}  (goal <= 0.50)"
    )


def throughput(n: int, workers: int, db: Path) -> None:
    def noop() -> None:
        return None

    with ThreadPoolExecutor(workers) as pool:
        t0 = time.perf_counter()
        wait([pool.submit(noop) for _ in range(n)])
        t_pool = time.perf_counter() - t0

    manager = rnb.TaskManager(db, workers=workers)
    try:
        t0 = time.perf_counter()
        ids = [manager.enqueue(noop) for _ in range(n)]
        t_enqueue = time.perf_counter() - t0
        assert isinstance(manager.backend, EmbeddedBackend)
        manager.wait(ids[-1])  # returns once its 'complete' is committed to DuckDB
        while (stored := manager.backend.store.count_tasks(TaskQuery.of("complete"))) < n:
            time.sleep(0.001)
        t_ours = time.perf_counter() - t0
    finally:
        manager.shutdown()
    print(f"\n## Throughput: {n:,} no-op tasks, {workers} workers")
    print(f"  ThreadPoolExecutor            {n / t_pool:10,.0f} tasks/s  ({t_pool:.2f} s)")
    print(
        f"  raytha_nb, durable 'complete'  {n / t_ours:10,.0f} tasks/s  ({t_ours:.2f} s; "
        f"enqueue {t_enqueue / n * 1e6:.1f} us each; {stored:,} rows complete in DuckDB)"
    )
    print(
        f"  -> raytha_nb / ThreadPoolExecutor time = {t_ours / t_pool:.1f}x  (goal >= 10,000 tasks/s)"
    )


def freshness(samples: int, db: Path) -> None:
    manager = rnb.TaskManager(db, workers=1)
    assert isinstance(manager.backend, EmbeddedBackend)
    store = manager.backend.store
    step = threading.Event()
    reported: list[float] = []
    done = threading.Event()

    def body(ctx: rnb.TaskContext) -> None:
        for i in range(1, samples + 1):
            step.wait()
            step.clear()
            reported.append(time.perf_counter())
            ctx.report(percent=i * 100 / samples)
        done.wait()

    job = manager.submit(body, name="fresh", task="fresh")
    readable, committed = [], []
    try:
        while manager.get_task(job).status is not rnb.TaskStatus.PROCESSING:
            time.sleep(0.001)
        for i in range(1, samples + 1):
            want = i * 100 / samples
            step.set()
            while manager.get_task(job).percent_complete != want:
                pass
            readable.append(time.perf_counter() - reported[-1])
            query = "SELECT percent_complete FROM tasks WHERE id = ?"
            while (row := store.sql(query, [job]).fetchone()) is None or row[0] != want:
                time.sleep(0.0005)
            committed.append(time.perf_counter() - reported[-1])
        done.set()
    finally:
        done.set()
        manager.shutdown()

    def pct(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[q - 1] * 1e3 if q < 100 else max(values) * 1e3

    print(f"\n## Freshness over {samples} reports (flush interval {manager.publisher.interval}s)")
    print(
        f"  report -> get_task:        p50 {pct(readable, 50):7.3f} ms   p99 {pct(readable, 99):7.3f} ms"
    )
    print(
        f"  report -> DuckDB committed: p50 {pct(committed, 50):7.1f} ms   p99 {pct(committed, 99):7.1f} ms"
    )


def store_size(n: int, db: Path) -> None:
    manager = rnb.TaskManager(db, workers=4)
    t0 = time.perf_counter()
    ids = [manager.enqueue(lambda: None, name=f"job-{i % 10}") for i in range(n)]
    assert isinstance(manager.backend, EmbeddedBackend)
    while manager.backend.store.count_tasks(TaskQuery.of("complete")) < n:
        time.sleep(0.01)
    t_fill = time.perf_counter() - t0
    manager.shutdown()
    manager = rnb.TaskManager(db)
    try:

        def timed(fn: Any, reps: int = 20) -> float:
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            return (time.perf_counter() - t0) / reps * 1e3

        t_list = timed(lambda: manager.list_tasks(limit=100))
        t_name = timed(lambda: manager.list_tasks(name="job-3", limit=100))
        t_get = timed(lambda: manager.get_task(ids[n // 2]), 200)
    finally:
        manager.shutdown()
    size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
    print(f"\n## Store with {n:,} finished tasks (filled in {t_fill:.1f} s)")
    print(
        f"  file size                     {size / 1e6:8.1f} MB  ({size / n:.0f} bytes/task incl. history)"
    )
    print(f"  list_tasks(limit=100)         {t_list:8.2f} ms")
    print(f"  list_tasks(name=..., 100)     {t_name:8.2f} ms")
    print(f"  get_task(id) from DuckDB      {t_get:8.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    opts = parser.parse_args()
    scale = 10 if opts.quick else 1
    print(f"raytha_nb {rnb.__version__}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        bench_mgr = rnb.TaskManager(tmpdir / "overhead.duckdb", workers=1)
        try:
            progress_overhead(10_000_000 // scale, bench_mgr)
        finally:
            bench_mgr.shutdown()
        throughput(20_000 // scale, 4, tmpdir / "throughput.duckdb")
        freshness(200 // (2 if opts.quick else 1), tmpdir / "fresh.duckdb")
        store_size(100_000 // scale, tmpdir / "size.duckdb")


if __name__ == "__main__":
    main()
