"""The process executor against its peers, measured in the same run.

    python benchmarks/bench_process.py            # the sizes from issue #12
    python benchmarks/bench_process.py --quick    # smaller, for a smoke run

1. no-op task overhead: "process" vs a bare ProcessPoolExecutor and loky (if installed)
   shipping cloudpickle bytes (all with 2 warm workers; throughput of N tasks, and
   one-at-a-time latency; best of several interleaved runs);
2. four CPU-bound tasks on 2 cores: "process" vs "thread" and vs the bare pool;
3. cancel of a task blocked in a C call (``time.sleep(60)``): request -> cancelled,
   after the grace period and with ``force=True``.

Times are to the task's final state in the kernel (not to the store's commit, which
waits for the publisher's next flush). Machines here are shared: read the ratios.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from pathlib import Path
from typing import Any

import cloudpickle

import raytha_nb as rnb

try:  # a peer to compare with (joblib's executor), when installed
    from loky import get_reusable_executor
except ImportError:
    get_reusable_executor = None

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
    """How many turns of ``_burn`` take ``seconds`` of CPU here (CPU time, not wall
    time: on a shared machine others' load would shrink the tasks)."""
    n = 200_000
    while True:
        start = time.process_time()
        _burn(n)
        took = time.process_time() - start
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


def _bare(pool: Any, fn: Any, args: list[Any], n: int) -> float:
    start = time.perf_counter()
    futures = [pool.submit(_call, cloudpickle.dumps(fn), *args) for _ in range(n)]
    wait_futures(futures)
    for future in futures:
        future.result()
    return time.perf_counter() - start


def _latency_rnb(n: int, executor: str = "process") -> float:
    start = time.perf_counter()
    for _ in range(n):
        _finished(rnb.enqueue(_noop, executor=executor))
    return time.perf_counter() - start


def _latency_bare(pool: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        pool.submit(_call, cloudpickle.dumps(_noop)).result()
    return time.perf_counter() - start


def _best(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Each run's best time of ``repeats``, the runs interleaved: on a shared machine a
    burst of someone else's load then hits all of them, not one."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, run in runs.items():
            best[name] = min(best[name], run())
    return best


def overhead(pools: dict[str, Any], n: int, repeats: int) -> None:
    runs: dict[str, Callable[[], float]] = {"process": lambda: _run("process", _noop, None, n)}
    for name, pool in pools.items():
        runs[name] = functools.partial(_bare, pool, _noop, [], n)
    # The manager's own bookkeeping per task (record, publisher, store), on the GIL
    # whatever the executor: the floor under "process", which the bare pools lack.
    runs["thread"] = lambda: _run("thread", _noop, None, n)
    best = _best(runs, repeats)
    ours, bare = best["process"], best["bare pool"]
    peers = "".join(
        f", {name} {best[name] / n * 1e3:.2f} ms/task ({ours / best[name]:.2f}x)"
        for name in pools
        if name != "bare pool"
    )
    print(
        f"no-op x{n} throughput: process {ours / n * 1e3:.2f} ms/task, bare pool "
        f"{bare / n * 1e3:.2f} ms/task -> {ours / bare:.2f}x (goal <= 1.5x){peers}; "
        f"thread executor {best['thread'] / n * 1e3:.2f} ms/task (the manager's floor)"
    )
    m = n // 4
    runs = {"process": lambda: _latency_rnb(m)}
    for name, pool in pools.items():
        runs[name] = functools.partial(_latency_bare, pool, m)
    runs["thread"] = functools.partial(_latency_rnb, m, "thread")
    best = _best(runs, repeats)
    ours, bare = best["process"], best["bare pool"]
    peers = "".join(
        f", {name} {best[name] / m * 1e3:.2f} ms/task ({ours / best[name]:.2f}x)"
        for name in pools
        if name != "bare pool"
    )
    print(
        f"no-op one at a time x{m}: process {ours / m * 1e3:.2f} ms/task, bare pool "
        f"{bare / m * 1e3:.2f} ms/task -> {ours / bare:.2f}x (goal <= 1.5x){peers}; "
        f"thread executor {best['thread'] / m * 1e3:.2f} ms/task (the manager's floor)"
    )


def cpu(pool: Any, seconds: float, repeats: int) -> None:
    turns = _turns(seconds)
    best = _best(
        {
            "process": functools.partial(_run, "process", _burn, [turns], 4),
            "thread": functools.partial(_run, "thread", _burn, [turns], 4),
            "bare": functools.partial(_bare, pool, _burn, [turns], 4),
        },
        repeats,
    )
    process, thread, bare = best["process"], best["thread"], best["bare"]
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
            pools: dict[str, Any] = {"bare pool": pool}
            if get_reusable_executor is None:
                print("loky is not installed (pip install loky): measured without it")
            else:
                pools["loky"] = get_reusable_executor(max_workers=2)
            for peer in pools.values():
                wait_futures([peer.submit(_noop) for _ in range(2)])
            overhead(pools, 100 if quick else 400, 3 if quick else 7)
            cpu(pool, 0.5 if quick else 2.0, 1 if quick else 2)
            if "loky" in pools:
                pools["loky"].shutdown()
        cancel(3 if quick else 7)
        rnb.manager().shutdown()


if __name__ == "__main__":
    main()
