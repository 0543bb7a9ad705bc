"""``executor="server"`` on a real jupyter server, beside its peers in the same run.

    python benchmarks/bench_server.py            # the sizes from issue #12
    python benchmarks/bench_server.py --quick    # smaller, for a smoke run

1. enqueue -> ``processing`` (seen through REST), one task at a time, for
   ``executor="server"`` (a worker process per task: the server's warm spare when it
   had time to import, back to back mostly not) beside ``"process"`` (the kernel's
   warm pool) and a bare ``python -c "import raytha_nb"`` with the same interpreter
   (what a cold worker pays at least);
2. survival across a kernel restart: N tasks of ~4 s each per executor, the kernel is
   restarted while they run; how many still complete (``"thread"`` is the peer: its
   tasks die with the kernel).

Machines here are shared and noisy: read the ratios.
"""

from __future__ import annotations

import argparse
import ast
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests._server_helpers import JupyterServer, run  # noqa: E402

SETUP = """
import time, raytha_nb as rnb

def hold(seconds):
    for _ in range(int(seconds * 20)):
        rnb.check_cancelled()
        time.sleep(0.05)
    return seconds
"""


def _value(client: Any, code: str) -> Any:
    return ast.literal_eval(run(client, code))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _started(
    server: JupyterServer, client: Any, executor: str, n: int, gap: float = 0.0
) -> list[float]:
    """Seconds from enqueue() in the kernel to ``processing`` in REST, one at a time,
    ``gap`` s apart (the server's spare worker finishes its imports meanwhile)."""
    out = []
    for _ in range(n):
        time.sleep(gap)
        began = time.monotonic()
        job = _value(client, f"rnb.enqueue(hold, {{'seconds': 0}}, executor={executor!r})")
        server.wait_for(job, {"processing", "complete"}, 60)
        out.append(time.monotonic() - began)
        server.wait_for(job, {"complete"}, 60)
    return out


def _bare_start(n: int) -> list[float]:
    out = []
    for _ in range(n):
        began = time.monotonic()
        subprocess.run([sys.executable, "-c", "import raytha_nb"], check=True)
        out.append(time.monotonic() - began)
    return out


def _survivors(server: JupyterServer, executor: str, n: int) -> int:
    kernel_id, client = server.start_kernel()
    try:
        run(client, SETUP)
        jobs = [
            _value(client, f"rnb.enqueue(hold, {{'seconds': 4}}, executor={executor!r})")
            for _ in range(n)
        ]
        for job in jobs:
            server.wait_for(job, {"processing"}, 60)
        status, _, _ = server.request("POST", f"api/kernels/{kernel_id}/restart", {})
        assert status == 200
        ends = [server.wait_for(job, {"complete", "interrupted", "error"}, 90) for job in jobs]
        return sum(end["status"] == "complete" for end in ends)
    finally:
        client.stop_channels()
        server.request("DELETE", f"api/kernels/{kernel_id}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer tasks (a smoke run)")
    quick = parser.parse_args().quick
    n, survivors = (5, 2) if quick else (20, 6)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        server = JupyterServer(
            home, home / "db" / "tasks.duckdb", heartbeat_timeout=10,
            options=(f"--RaythaNbApp.max_server_workers={survivors}",),
        ).start()  # fmt: skip
        try:
            kernel_id, client = server.start_kernel()
            run(client, SETUP)
            _started(server, client, "process", 2)  # start the pool's workers
            latency = {
                "server, back to back": _started(server, client, "server", n),
                "server, 2 s apart": _started(server, client, "server", n, gap=2.0),
                "process": _started(server, client, "process", n),
            }
            client.stop_channels()
            server.request("DELETE", f"api/kernels/{kernel_id}")
            bare = _bare_start(n)
            print(f"enqueue -> processing in REST, one task at a time ({n} tasks):")
            for name, values in latency.items():
                print(
                    f"  {name:21s} p50 {statistics.median(values) * 1000:7.0f} ms   "
                    f"p95 {_pct(values, 0.95) * 1000:7.0f} ms"
                )
            print(
                f"  bare `python -c 'import raytha_nb'`  p50 {statistics.median(bare) * 1000:7.0f} ms"
            )
            for name in ("server, back to back", "server, 2 s apart"):
                ratio = statistics.median(latency[name]) / statistics.median(bare)
                print(f"  {name} / bare interpreter start: {ratio:.2f}x")
            print(f"survival across a kernel restart ({survivors} tasks of 4 s each):")
            for executor in ("server", "thread"):
                kept = _survivors(server, executor, survivors)
                print(
                    f"  {executor:8s} {kept}/{survivors} complete ({100 * kept / survivors:.0f} %)"
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
