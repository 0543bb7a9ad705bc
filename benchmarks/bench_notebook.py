"""Notebook responsiveness and widget traffic, measured through a real ipykernel.

    python benchmarks/bench_notebook.py [--samples 200]

1. Round trip of a trivial cell (``1+1``), p50/p95, while the kernel is (a) idle,
   (b) running a pure-Python CPU-bound background task, (c) running a task that calls
   ``report()`` as fast as it can. Peer: the same work on a bare ``threading.Thread``.
2. A task calling ``report()`` one million times with its widget shown: report calls/s,
   widget comm messages/s. Peer: a ``tqdm.notebook`` bar updated one million times on a
   plain thread (tqdm's own throttling), measured the same way.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _kernel import Kernel, running_kernel  # noqa: E402

CPU = "x = 0\nwhile not stop():\n    for _ in range(20_000):\n        x += 1\n"
REPORT = (
    "i = 0\nwhile not stop():\n    for _ in range(1_000):\n"
    "        report(i % 100)\n        i += 1\n"
)


def round_trips(k: Kernel, samples: int) -> tuple[float, float]:
    times = sorted(k.execute("1+1").seconds * 1000 for _ in range(samples))
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def background(k: Kernel, body: str, raytha: bool) -> None:
    """Start ``body`` (using ``stop()``/``report()``) as a task or on a bare thread."""
    if raytha:
        k.execute(
            "%%background --no-widget --name bench\n"
            "stop = lambda: rnb.current().cancelled\nreport = rnb.progress\n" + body
        )
    else:
        k.execute(
            "import threading\n_halt = threading.Event()\nstop = _halt.is_set\n"
            "report = lambda p: None\n"
            f"def _peer():\n    global x, i\n{_indent(body)}\n"
            "threading.Thread(target=_peer, daemon=True).start()"
        )


def halt(k: Kernel, raytha: bool) -> None:
    if raytha:
        k.execute("j = rnb.list_tasks(name='bench')[0].id; rnb.cancel(j); rnb.wait(j, 30)")
    else:
        k.execute("_halt.set(); time.sleep(0.2)")


def _indent(code: str) -> str:
    return "\n".join("    " + line for line in code.splitlines())


def responsiveness(k: Kernel, samples: int) -> None:
    print("1. foreground round trip of `1+1` (ms)")
    print(f"   {'load':<34}{'p50':>8}{'p95':>8}   {'peer p50':>9}{'peer p95':>9}   p95 ratio")
    p50, p95 = round_trips(k, samples)
    print(f"   {'(a) idle':<34}{p50:8.2f}{p95:8.2f}")
    for label, body in (("(b) CPU-bound task", CPU), ("(c) report() as fast as possible", REPORT)):
        results = []
        for raytha in (True, False):
            background(k, body, raytha)
            time.sleep(0.3)
            results.append(round_trips(k, samples))
            halt(k, raytha)
        (r50, r95), (q50, q95) = results
        print(f"   {label:<34}{r50:8.2f}{r95:8.2f}   {q50:9.2f}{q95:9.2f}   {r95 / q95:8.2f}x")


def widget_traffic(k: Kernel, calls: int) -> None:
    print(f"2. {calls:,} progress updates with a widget shown")
    start = len(k.messages)
    run = k.execute(
        f"%%background --name flood\nt0 = time.perf_counter()\n"
        f"for n in range({calls}):\n    rnb.progress(n * 100 / {calls})\n"
        "time.perf_counter() - t0"
    )
    assert run.widget_ids()
    job = k.value("rnb.list_tasks(name='flood')[0].id")
    k.value(f"rnb.wait({job!r}, 120).status.value")
    seconds = float(k.value(f"rnb.result({job!r})"))
    k.execute("time.sleep(0.3)")
    msgs = [m for m in k.messages[start:] if m["msg_type"] == "comm_msg"]
    print(
        f"   raytha_nb: {calls / seconds:12,.0f} report()/s, "
        f"{len(msgs) / seconds:7.1f} comm msgs/s ({len(msgs)} in {seconds:.2f} s)"
    )
    start = len(k.messages)
    k.execute(
        "from tqdm.notebook import tqdm\nimport threading\n_done = threading.Event()\n"
        "def _peer():\n    global t_peer\n    t0 = time.perf_counter()\n"
        f"    bar = tqdm(total={calls})\n    for _ in range({calls}):\n        bar.update(1)\n"
        "    bar.close()\n    t_peer = time.perf_counter() - t0\n    _done.set()\n"
        "threading.Thread(target=_peer).start()"
    )
    k.execute("_done.wait(120)")
    seconds = float(k.value("t_peer"))
    k.execute("time.sleep(0.3)")
    msgs = [m for m in k.messages[start:] if m["msg_type"] == "comm_msg"]
    print(
        f"   tqdm.notebook (peer): {calls / seconds:12,.0f} update()/s, "
        f"{len(msgs) / seconds:7.1f} comm msgs/s ({len(msgs)} in {seconds:.2f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--switch", type=float, default=0.0, help="sys.setswitchinterval")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running_kernel(Path(tmp) / "bench.duckdb") as k:
        k.execute(f"import sys, time\nsys.path.insert(0, {str(ROOT)!r})\nimport raytha_nb as rnb")
        if opts.switch:  # the extension sets 0.001; compare other values
            k.execute(f"sys.setswitchinterval({opts.switch})")
        responsiveness(k, opts.samples)
        widget_traffic(k, opts.calls)


if __name__ == "__main__":
    main()
