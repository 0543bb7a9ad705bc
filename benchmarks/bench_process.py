"""The process executor against its peers, measured in the same run.

    python benchmarks/bench_process.py            # the sizes from issue #12
    python benchmarks/bench_process.py --quick    # smaller, for a smoke run

1. no-op task overhead: "process" vs a bare ProcessPoolExecutor shipping cloudpickle
   bytes (both with 2 warm workers; throughput of N tasks, and one-at-a-time latency);
2. four CPU-bound tasks on 2 cores: "process" vs "thread" and vs the bare pool;
3. cancel of a task blocked in a C call (``time.sleep(60)``): request -> cancelled,
   after the grace period and with ``force=True``.

Times are to the task's final state in the kernel (not to the store's commit, which
waits for the publisher's next flush). Machines here are shared: read the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from pathlib import Path
from typing import Any

import cloudpickle

import raytha_nb as rnb

GRACE = 1.0


def _noop() -> None:
    return None


def _burn(n: int) -> int:
    """Pure-Python work: ``n`` loop turns (the GIL serialises it on threads)."""
    total = 0
    for i in range(n):
        total += i
    return total


def _turns(seconds: float) -> int:
    """How many turns of ``_burn`` take ``seconds`` here, alone."""
    n = 200_000
    while True:
        start = time.perf_counter()
        _burn(n)
        took = time.perf_counter() - start
        if took > 0.2:
            return int(n * seconds / took)
        n *= 2


def _call(payload: bytes, *args: Any) -> Any:
    return cloudpickle.loads(payload)(*args)


def _finished(job: str) -> None:
    """Block until ``job`` reached its final state in this process (woken by its change
    hook, as a future's result() is by its condition: no polling delay)."""
    live = rnb.manager().live(job)
    if live is None or live.status.finished:
        return
    done = threading.Event()
    hook = live.on_change

    def changed(task: Any) -> None:
        if hook is not None:
            hook(task)
        if task.status.finished:
            done.set()

    live.on_change = changed
    if not live.status.finished:
        done.wait()


def _run(executor: str, fn: Any, args: Any, n: int) -> float:
    start = time.perf_counter()
    jobs = [rnb.enqueue(fn, args, executor=executor) for _ in range(n)]
    for job in jobs:
        _finished(job)
    return time.perf_counter() - start


def _bare(pool: ProcessPoolExecutor, fn: Any, args: list[Any], n: int) -> float:
    start = time.perf_counter()
    futures = [pool.submit(_call, cloudpickle.dumps(fn), *args) for _ in range(n)]
    wait_futures(futures)
    for future in futures:
        future.result()
    return time.perf_counter() - start


def _latency_rnb(n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        _finished(rnb.enqueue(_noop, executor="process"))
    return time.perf_counter() - start


def _latency_bare(pool: ProcessPoolExecutor, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        pool.submit(_call, cloudpickle.dumps(_noop)).result()
    return time.perf_counter() - start


def overhead(pool: ProcessPoolExecutor, n: int) -> None:
    ours = min(_run("process", _noop, None, n) for _ in range(3))
    bare = min(_bare(pool, _noop, [], n) for _ in range(3))
    # The manager's own bookkeeping per task (record, publisher, store), on the GIL
    # whatever the executor: the floor under "process", which the bare pool lacks.
    floor = min(_run("thread", _noop, None, n) for _ in range(3))
    print(
        f"no-op x{n} throughput: process {ours / n * 1e3:.2f} ms/task, bare pool "
        f"{bare / n * 1e3:.2f} ms/task -> {ours / bare:.2f}x (goal <= 1.5x); "
        f"thread executor {floor / n * 1e3:.2f} ms/task (the manager's floor)"
    )
    m = n // 4
    ours = min(_latency_rnb(m) for _ in range(3))
    bare = min(_latency_bare(pool, m) for _ in range(3))
    print(
        f"no-op one at a time x{m}: process {ours / m * 1e3:.2f} ms/task, bare pool "
        f"{bare / m * 1e3:.2f} ms/task -> {ours / bare:.2f}x (goal <= 1.5x)"
    )


def cpu(pool: ProcessPoolExecutor, seconds: float) -> None:
    turns = _turns(seconds)
    process = _run("process", _burn, [turns], 4)
    thread = _run("thread", _burn, [turns], 4)
    bare = _bare(pool, _burn, [turns], 4)
    print(
        f"4 CPU tasks of {seconds:g} s: process {process:.2f} s, thread {thread:.2f} s, "
        f"bare pool {bare:.2f} s -> {thread / process:.2f}x faster than thread "
        f"(goal >= 1.8x), {process / bare:.2f}x the bare pool (goal <= 1.1x)"
    )


def cancel(repeats: int) -> None:
    for force in (False, True):
        times = []
        for _ in range(repeats):
            job = rnb.enqueue(time.sleep, [60], executor="process")
            live = rnb.manager().live(job)
            assert live is not None
            while live.status is rnb.TaskStatus.ENQUEUED:
                time.sleep(0.001)
            time.sleep(0.1)  # inside the C call
            start = time.perf_counter()
            rnb.cancel(job, force=force)
            _finished(job)
            times.append(time.perf_counter() - start)
            assert live.status is rnb.TaskStatus.CANCELLED, live.status
        goal = 0.2 if force else GRACE + 0.2
        label = "force=True" if force else f"grace {GRACE:g} s"
        print(
            f"cancel of time.sleep(60), {label}, x{repeats}: p50 "
            f"{statistics.median(times):.3f} s, max {max(times):.3f} s (goal <= {goal:g} s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    quick = parser.parse_args().quick
    sys.setswitchinterval(0.001)  # as in a kernel with raytha_nb loaded (magics.py)
    with tempfile.TemporaryDirectory() as tmp:
        rnb.configure(Path(tmp) / "bench.duckdb", process_workers=2, cancel_grace=GRACE)
        for job in [rnb.enqueue(_noop, executor="process") for _ in range(2)]:
            rnb.wait(job, 60)
        with ProcessPoolExecutor(2) as pool:
            wait_futures([pool.submit(_noop) for _ in range(2)])
            overhead(pool, 100 if quick else 400)
            cpu(pool, 0.5 if quick else 2.0)
        cancel(3 if quick else 7)
        rnb.manager().shutdown()


if __name__ == "__main__":
    main()
