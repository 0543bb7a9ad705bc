"""What the server spends on one kernel publish beyond the DuckDB commit itself.

    python benchmarks/bench_publish.py

While tasks run, every kernel publishes progress every 0.2 s, so this is the server's
steady load. Measured on the server's own TaskService over a real DuckDB file:
* progress-only publish (4 running tasks, the default worker count) vs the peer: the
  bare `Store.apply` of the same batch (the commit any design must pay);
* a batch with log lines too (the server checks each task's stored max seq).
Machines here are shared and noisy: read the ratios, not the absolute times.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raytha_nb.model import TaskStatus  # noqa: E402
from raytha_nb.protocol import Batch, LogRow, ProgressRow, Publish  # noqa: E402
from raytha_nb.server.events import EventHub  # noqa: E402
from raytha_nb.server.service import TaskService  # noqa: E402
from raytha_nb.store import Store  # noqa: E402
from tests._server_helpers import FAKE_PID, live_task, publish_body  # noqa: E402

ROUNDS = 400


def per_call_ms(fn: Callable[[int], object], rounds: int = ROUNDS) -> float:
    """Median of five runs of ``rounds`` calls, in ms per call."""
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for n in range(rounds):
            fn(n)
        runs.append((time.perf_counter() - started) / rounds * 1e3)
    return statistics.median(runs)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    store = Store(tmp / "tasks.duckdb")
    service = TaskService(store, EventHub(asyncio.new_event_loop()), heartbeat_timeout=30)
    tasks = [live_task(f"job {i}", status=TaskStatus.PROCESSING) for i in range(4)]
    ids = [t.id for t in tasks]
    service.publish(Publish.from_json(json.loads(publish_body(tasks))))

    def progress(n: int) -> Batch:
        now = time.time()
        return Batch(progress=[ProgressRow(i, 2, f"row {n}", float(n % 100), now) for i in ids])

    seq = itertools.count(1)

    def with_logs(n: int) -> Batch:
        # Each call logs new lines (as a kernel does): seqs only ever grow.
        batch = progress(n)
        batch.logs = [LogRow(i, next(seq), time.time(), "stdout", f"line {n}") for i in ids]
        return batch

    def publish(make: Callable[[int], Batch]) -> Callable[[int], object]:
        return lambda n: service.publish(Publish("s", make(n), "kernel-a", FAKE_PID, tuple(ids)))

    def decode(make: Callable[[int], Batch]) -> Callable[[int], object]:
        # What the kernel API adds before publish: parse and check the message.
        return lambda n: Publish.from_json(
            json.loads(
                json.dumps(Publish("s", make(n), "kernel-a", FAKE_PID, tuple(ids)).to_json())
            )
        )

    rows = [
        (
            "progress only",
            per_call_ms(publish(progress)),
            per_call_ms(lambda n: store.apply(progress(n))),
        ),
        (
            "progress + 1 log line/task",
            per_call_ms(publish(with_logs)),
            per_call_ms(lambda n: store.apply(with_logs(n))),
        ),
    ]
    print(f"server publish vs bare Store.apply of the same batch ({len(ids)} running tasks)")
    for name, ours, peer in rows:
        print(f"  {name:28s} publish {ours:6.2f} ms   apply {peer:6.2f} ms   -> {ours / peer:.2f}x")
    for name, make in (("progress only", progress), ("progress + 1 log line/task", with_logs)):
        cost = per_call_ms(decode(make))
        print(f"  {name:28s} + JSON decode and validation {cost:6.3f} ms per message")
    store.close()


if __name__ == "__main__":
    main()
