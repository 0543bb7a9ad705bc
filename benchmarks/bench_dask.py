"""The Dask executor against bare Dask, on the same LocalCluster, in the same run.

    python benchmarks/bench_dask.py            # the sizes from issue #12
    python benchmarks/bench_dask.py --quick    # smaller, for a smoke run

1. no-op task overhead: ``executor="dask"`` vs a bare ``client.submit(...).result()``
   (2 worker processes, 1 thread each; throughput of N tasks, and one at a time);
2. progress reported in a Dask worker -> visible in the kernel's live state, and in
   ``GET /raytha-nb/api/tasks/{id}`` of a started jupyter server this process publishes
   to (as a kernel does, default flush interval): latency p50/p95 (the worker's clock and
   ours are the same machine's; REST is polled every 10 ms).

Times in 1. are to the task's final state in the kernel (not to the store's commit,
which waits for the publisher's next flush); ours and bare alternate, best of 5 rounds
each. Machines here are shared: read the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import distributed

import raytha_nb as rnb
from raytha_nb._client import RemoteBackend

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(Path(__file__).parent), str(ROOT)]
from bench_process import _finished  # noqa: E402 - the same wait, woken by the change hook

from tests._server_helpers import JupyterServer, kernel_address  # noqa: E402


def _noop() -> None:
    return None


def _reporter(n: int, gap: float) -> None:
    """Reports its wall-clock time as progress, ``n`` times, ``gap`` s apart."""
    for i in range(n):
        rnb.progress(100.0 * i / n, repr(time.time()))
        time.sleep(gap)


def _throughput(n: int, bare: Any = None) -> float:
    start = time.perf_counter()
    if bare is not None:
        futures = [bare.submit(_noop, pure=False) for _ in range(n)]
        bare.gather(futures)
    else:
        for job in [rnb.enqueue(_noop, executor="dask") for _ in range(n)]:
            _finished(job)
    return time.perf_counter() - start


def _one_at_a_time(n: int, bare: Any = None) -> float:
    start = time.perf_counter()
    for _ in range(n):
        if bare is not None:
            bare.submit(_noop, pure=False).result()
        else:
            _finished(rnb.enqueue(_noop, executor="dask"))
    return time.perf_counter() - start


def _best(rounds: int, *runs: Callable[[], float]) -> list[float]:
    """Each run's best time over ``rounds``, the runs alternating (load moves here)."""
    best = [float("inf")] * len(runs)
    for _ in range(rounds):
        for i, run in enumerate(runs):
            best[i] = min(best[i], run())
    return best


def overhead(client: Any, n: int) -> None:
    ours, bare = _best(5, lambda: _throughput(n), lambda: _throughput(n, client))
    print(
        f"no-op x{n} throughput: dask executor {ours / n * 1e3:.2f} ms/task, bare "
        f"client.submit {bare / n * 1e3:.2f} ms/task -> {ours / bare:.2f}x (goal <= 1.5x)"
    )
    m = max(n // 4, 1)
    ours, bare = _best(5, lambda: _one_at_a_time(m), lambda: _one_at_a_time(m, client))
    print(
        f"no-op one at a time x{m}: dask executor {ours / m * 1e3:.2f} ms/task, bare "
        f"client.submit(...).result() {bare / m * 1e3:.2f} ms/task -> {ours / bare:.2f}x "
        "(goal <= 1.5x)"
    )


def _p50_p95(delays: list[float]) -> str:
    delays = sorted(delays)
    p95 = delays[int(0.95 * (len(delays) - 1))]
    return f"p50 {statistics.median(delays) * 1e3:.0f} ms, p95 {p95 * 1e3:.0f} ms"


def progress_latency(n: int) -> None:
    job = rnb.enqueue(_reporter, [n, 0.1], executor="dask")
    live = rnb.manager().live(job)
    assert live is not None
    delays: list[float] = []
    seen = None
    while not live.status.finished:  # watch the live state (1 ms resolution)
        info = live.status_info
        if info and info[0].isdigit() and info != seen:
            seen = info
            delays.append(time.time() - float(info))
        time.sleep(0.001)
    print(f"progress in a Dask worker -> kernel x{len(delays)}: {_p50_p95(delays)}")


def rest_latency(client: Any, n: int, home: Path) -> None:
    """The same reporter, published to a started jupyter server; REST polled."""
    server = JupyterServer(home, home / "tasks.duckdb", heartbeat_timeout=30).start()
    manager = rnb.TaskManager(backend=RemoteBackend(kernel_address(server)), dask=client)
    try:
        job = manager.enqueue(_reporter, [n, 0.1], executor="dask")
        delays: list[float] = []
        seen = None
        while True:
            status, record, _ = server.request("GET", f"raytha-nb/api/tasks/{job}")
            now = time.time()
            if status == 200:
                info = record["status_info"]
                if info and info[0].isdigit() and info != seen:
                    seen = info
                    delays.append(now - float(info))
                if record["status"] not in ("enqueued", "processing"):
                    break
            time.sleep(0.01)
        print(
            f"progress in a Dask worker -> visible in REST x{len(delays)}: {_p50_p95(delays)} "
            "(goal <= 500 ms)"
        )
    finally:
        manager.shutdown()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    quick = parser.parse_args().quick
    sys.setswitchinterval(0.001)  # as in a kernel with raytha_nb loaded (magics.py)
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = distributed.Client(cluster, set_as_default=False)
    with tempfile.TemporaryDirectory() as tmp:
        rnb.configure(Path(tmp) / "bench.duckdb", dask=client)
        for job in [rnb.enqueue(_noop, executor="dask") for _ in range(4)]:
            rnb.wait(job, 60)
        client.gather([client.submit(_noop, pure=False) for _ in range(4)])
        overhead(client, 100 if quick else 400)
        progress_latency(20 if quick else 100)
        rnb.manager().shutdown()
        (Path(tmp) / "server").mkdir()
        rest_latency(client, 20 if quick else 100, Path(tmp) / "server")
    client.close()
    cluster.close()


if __name__ == "__main__":
    main()
