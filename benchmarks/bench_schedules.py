"""Schedules on a real jupyter server: due time -> run ``processing``.

    python benchmarks/bench_schedules.py            # 100 firings of an every=1 schedule
    python benchmarks/bench_schedules.py --quick    # 15 firings, for a smoke run

An ``every=1`` schedule (``overlap="allow"``, so each due time gets its run) of a
function that returns at once. For each run: the due time, when the server's timer
fired it (its schedule event) and when its worker marked it ``processing`` (the task's
``started_at``). The peer is jupyter-scheduler's timer, a poll every 10 s: the same
runs, each fired at the first poll tick after its due time (a random phase) and then
paying the same measured start cost. Machines here are shared and noisy: read ratios.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raytha_nb.model import parse_iso  # noqa: E402
from tests._server_helpers import JupyterServer  # noqa: E402

API = "raytha-nb/api"
#: jupyter-scheduler's poll interval (its SchedulerApp default).
POLL = 10.0


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _firings(server: JupyterServer, n: int) -> list[tuple[float, float, float]]:
    """(due, fired, processing) epoch seconds of the first ``n`` runs."""
    status, made, _ = server.request(
        "POST", f"{API}/schedules",
        {"task": "jobs:tick", "every": 1, "overlap": "allow", "name": "bench every 1 s"},
    )  # fmt: skip
    assert status == 201, made
    sid = made["id"]
    while server.get(f"{API}/schedules/{sid}")["runs"] < n:
        time.sleep(0.5)
    server.request("POST", f"{API}/schedules/{sid}/pause")
    events = server.get(f"{API}/schedules/{sid}/events?limit=1000")["events"]
    runs = [e for e in events if e["event"] == "run"][::-1][:n]
    out = []
    for event in runs:
        task = server.wait_for(event["task_id"], {"complete", "error"}, 120)
        out.append((_ts(event["due"]), _ts(event["ts"]), _ts(task["started_at"])))
    return out


def _ts(text: Any) -> float:
    return parse_iso(str(text)).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer firings (a smoke run)")
    n = 15 if parser.parse_args().quick else 100
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        server = JupyterServer(
            home, home / "db" / "tasks.duckdb", heartbeat_timeout=30.0,
            options=("--RaythaNbApp.max_server_workers=4",),
        )  # fmt: skip
        (home / "notebooks" / "jobs.py").write_text("def tick():\n    return 1\n")
        server.start()
        try:
            rows = _firings(server, n)
        finally:
            server.stop()
    timer = [fired - due for due, fired, _ in rows]
    ours = [started - due for due, _, started in rows]
    start_cost = [started - fired for _, fired, started in rows]
    phase = random.uniform(0, POLL)
    polled = [
        (phase + POLL * -(-(due - phase) // POLL)) - due + cost
        for (due, _, _), cost in zip(rows, start_cost)
    ]
    print(f"due time -> run processing, {n} firings of an every=1 schedule:")
    for name, values in (
        ("raytha_nb timer", ours),
        ("10 s poll (jupyter-scheduler), same runs", polled),
    ):
        print(f"  {name}: p50 {statistics.median(values):.3f} s, p99 {_pct(values, 0.99):.3f} s")
    print(
        f"  of which the timer (due -> fired): p50 {statistics.median(timer) * 1000:.1f} ms, "
        f"p99 {_pct(timer, 0.99) * 1000:.1f} ms; worker start (fired -> processing): "
        f"p50 {statistics.median(start_cost):.3f} s"
    )
    print(
        f"  10 s poll / raytha_nb timer: p50 "
        f"{statistics.median(polled) / statistics.median(ours):.1f}x, "
        f"p99 {_pct(polled, 0.99) / _pct(ours, 0.99):.1f}x"
    )
    goal = "met" if _pct(ours, 0.99) <= 1.0 else "missed"
    print(f"  goal p99 <= 1 s: {goal} ({_pct(ours, 0.99):.3f} s)")


if __name__ == "__main__":
    main()
