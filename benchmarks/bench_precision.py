"""Start precision of delayed and retried tasks, and the cost of a checkpoint.

    python benchmarks/bench_precision.py            # the sizes from issue #13
    python benchmarks/bench_precision.py --quick    # smaller, for a smoke run

1. due -> ``processing``: tasks enqueued with ``delay=`` (and attempts retried after
   ``retry_delay=``), how late each started after it was due, p50/p99 (goal p99 <= 50 ms);
   the peer is ``threading.Timer`` firing a no-op, measured the same way in the same run;
2. ``ctx.checkpoint(i)`` every iteration of a loop vs ``ctx.report(i)`` every iteration
   (ns per call; the store is written at most once a second either way).

Machines here are shared and noisy: read the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import raytha_nb as rnb


def _late(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(values) * 1000:6.1f} ms  p99 {p99 * 1000:6.1f} ms"


def _delayed(n: int, gap: float) -> list[float]:
    """Lateness of ``n`` tasks due ``gap`` s apart, all enqueued at once."""
    now = time.time()
    jobs = [
        (rnb.enqueue(time.sleep, [0], delay=gap * (i + 1)), now + gap * (i + 1)) for i in range(n)
    ]
    out = []
    for job, due in jobs:
        record = rnb.wait(job, 60)
        assert record.started_at is not None
        out.append(record.started_at.timestamp() - due)
    return out


_FAILS: dict[str, int] = {}


def _fail_once(key: str) -> None:
    _FAILS[key] = _FAILS.get(key, 0) + 1
    if _FAILS[key] == 1:
        raise ValueError("first attempt fails")


def _retried(n: int, delay: float) -> list[float]:
    """Lateness of the second attempt of ``n`` tasks that fail once."""
    out = []
    jobs = [
        rnb.enqueue(_fail_once, {"key": f"k{i}"}, retries=1, retry_delay=delay) for i in range(n)
    ]
    for job in jobs:
        rnb.wait(job, 60)
        events = rnb.history(job)
        failed = next(e["ts"] for e in events if e["status"] == "error")
        second = [e["ts"] for e in events if e["status"] == "processing"][-1]
        out.append((second - failed).total_seconds() - delay)
    return out


def _timers(n: int, gap: float) -> list[float]:
    out: list[float] = []
    done = threading.Semaphore(0)
    start = time.time()

    def fire(due: float) -> None:
        out.append(time.time() - due)
        done.release()

    for i in range(n):
        due = start + gap * (i + 1)
        threading.Timer(due - time.time(), fire, args=(due,)).start()
    for _ in range(n):
        done.acquire()
    return out


def _loop(calls: int, checkpoint: bool) -> int:
    def body() -> int:
        ctx = rnb.current()
        assert ctx is not None
        began = time.perf_counter()
        for i in range(calls):
            if checkpoint:
                ctx.checkpoint(i)
            else:
                ctx.report(i * 100.0 / calls)
        return round((time.perf_counter() - began) * 1e9 / calls)

    job = rnb.enqueue(body)
    ns: int = rnb.result(job, timeout=120)
    return ns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer tasks (a smoke run)")
    quick = parser.parse_args().quick
    n, gap, calls = (20, 0.02, 20_000) if quick else (100, 0.03, 200_000)
    with tempfile.TemporaryDirectory() as tmp:
        rnb.configure(Path(tmp) / "tasks.duckdb", workers=4)
        delayed, retried, timers = _delayed(n, gap), _retried(n, gap), _timers(n, gap)
        print(f"due -> processing ({n} tasks):")
        print(f"  delay=       {_late(delayed)}")
        print(f"  retry_delay= {_late(retried)}")
        print(f"  threading.Timer (peer) {_late(timers)}")
        ratio = statistics.median(delayed) / max(statistics.median(timers), 1e-6)
        print(f"  delayed / Timer, p50: {ratio:.1f}x")
        report, checkpoint = _loop(calls, False), _loop(calls, True)
        print(f"per call, {calls:,} calls in one task:")
        print(f"  ctx.report      {report:6d} ns")
        print(f"  ctx.checkpoint  {checkpoint:6d} ns  ({checkpoint / report:.1f}x report)")
        rnb.manager().shutdown()


if __name__ == "__main__":
    main()
