"""Server-mode measurements, each beside a peer measured in the same run.

    python benchmarks/server_bench.py   # prints JSON, writes benchmarks/server-results.json

Starts a real `jupyter server` with the extension on 127.0.0.1 and real kernels:
* GET tasks/{id} latency while 100 tasks in 2 kernels report progress at 10 Hz
  (peer: Jupyter's own GET /api/status on the same server, same moment);
* GET tasks (one page of 100) with 10,000 tasks in the store (peer: GET tasks/{id});
* freshness: report() in a kernel → visible through REST;
* cancel from REST and from another kernel → the task ends cancelled;
* ingest: task rows/s the server commits from kernel batches, vs single-row DuckDB
  INSERTs into a file in this process.
"""

from __future__ import annotations

import ast
import http.client
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raytha_nb.model import TaskStatus  # noqa: E402
from tests._server_helpers import JupyterServer, live_task, publish_body, run  # noqa: E402


class Client:
    """One keep-alive HTTP connection to the server (user or kernel credentials)."""

    def __init__(self, server: JupyterServer, token: str) -> None:
        self.con = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        self.headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: str | None = None) -> tuple[float, Any]:
        started = time.perf_counter()
        self.con.request(method, "/" + path, body=body, headers=self.headers)
        response = self.con.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - started
        assert response.status < 300, (response.status, data[:300])
        return elapsed, json.loads(data) if data else None


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(pct(values, 0.5) * 1000, 2),
        "p99_ms": round(pct(values, 0.99) * 1000, 2),
        "n": len(values),
    }


PROGRESS = """
import time, raytha_nb as rnb
rnb.configure(workers=50)

def ticker(seconds):
    for i in range(int(seconds * 10)):
        rnb.progress(100 * i / (seconds * 10), info=f"tick {i}")
        time.sleep(0.1)

ids = [rnb.enqueue(ticker, {"seconds": SECONDS}) for _ in range(50)]
ids
"""

FRESH = """
import time, raytha_nb as rnb

def stamper(n):
    for i in range(n):
        rnb.progress(i, info=repr(time.time()))
        time.sleep(0.25)

fresh = rnb.enqueue(stamper, {"n": 40})
fresh
"""

SPIN = """
import time, raytha_nb as rnb

def spin():
    while True:
        rnb.check_cancelled()
        time.sleep(0.01)

spin_id = rnb.enqueue(spin)
spin_id
"""


def wait_status(user: Client, job: str, status: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, task = user.call("GET", f"raytha-nb/api/tasks/{job}")
            if task["status"] == status:
                return
        except AssertionError:
            pass  # 404 until the kernel's first flush
        if time.monotonic() > deadline:
            raise TimeoutError(f"{job} never became {status}")
        time.sleep(0.002)


def main() -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        server = JupyterServer(home, home / "tasks.duckdb", heartbeat_timeout=60).start()
        secret = (home / ".tasks.kernel-secret").read_text()
        kernels: list[tuple[str, Any]] = []
        try:
            user = Client(server, server.token)
            kernels = [server.start_kernel() for _ in range(2)]

            # 1. GET tasks/{id} under load: 100 tasks, 2 kernels, 10 Hz each.
            ids: list[str] = []
            for _, client in kernels:
                ids += ast.literal_eval(run(client, PROGRESS.replace("SECONDS", "12")))
            for job in ids:
                wait_status(user, job, "processing")
            ours: list[float] = []
            peer: list[float] = []
            deadline = time.monotonic() + 6
            i = 0
            while time.monotonic() < deadline:
                ours.append(user.call("GET", f"raytha-nb/api/tasks/{ids[i % len(ids)]}")[0])
                peer.append(user.call("GET", "api/status")[0])
                i += 1
            results["get_task_under_load"] = {
                "ours": ms(ours),
                "peer_jupyter_api_status": ms(peer),
                "p99_ratio_vs_peer": round(pct(ours, 0.99) / pct(peer, 0.99), 2),
            }

            # 2. Freshness: report() → visible through REST.
            fresh = ast.literal_eval(run(kernels[0][1], FRESH))
            lags: list[float] = []
            seen: set[str] = set()
            wait_status(user, fresh, "processing")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                _, task = user.call("GET", f"raytha-nb/api/tasks/{fresh}")
                info = task["status_info"]
                if info and info not in seen:
                    seen.add(info)
                    lags.append(time.time() - float(info))
                if task["status"] == "complete":
                    break
                time.sleep(0.003)
            results["freshness_report_to_rest"] = ms(lags)

            # 3. Cancel latency, from REST and from the other kernel.
            rest: list[float] = []
            other: list[float] = []
            for n in range(8):
                job = ast.literal_eval(run(kernels[0][1], SPIN))
                wait_status(user, job, "processing")
                started = time.perf_counter()
                if n % 2:
                    run(kernels[1][1], f"rnb.cancel({job!r})")
                else:
                    user.call("POST", f"raytha-nb/api/tasks/{job}/cancel", "{}")
                wait_status(user, job, "cancelled")
                (other if n % 2 else rest).append(time.perf_counter() - started)
            results["cancel_to_cancelled"] = {"from_rest": ms(rest), "from_kernel_b": ms(other)}

            # 4. Ingest: 10,000 finished tasks in batches of 1,000 through the kernel API.
            kernel_api = Client(server, secret)
            spent = 0.0
            rows = 0
            for b in range(10):
                batch = [
                    live_task(f"bulk-{b}-{i}", status=TaskStatus.COMPLETE, kernel_id="bench")
                    for i in range(1000)
                ]
                body = publish_body(batch, session=f"bench-{b}", kernel_id="bench")
                spent += kernel_api.call("POST", "raytha-nb/kernel-api/publish", body)[0]
                rows += len(batch)
            single = single_row_inserts(home / "peer.duckdb", 2000)
            results["ingest"] = {
                "server_task_rows_per_s": round(rows / spent),
                "peer_single_row_inserts_per_s": round(single),
                "ratio": round(rows / spent / single, 1),
            }

            # 5. GET tasks, one page of 100, with 10,000+ tasks in the store.
            pages = [user.call("GET", "raytha-nb/api/tasks?limit=100")[0] for _ in range(60)]
            deep = [
                user.call("GET", "raytha-nb/api/tasks?limit=100&offset=9000")[0] for _ in range(30)
            ]
            search = [
                user.call("GET", "raytha-nb/api/tasks?limit=100&q=bulk-7&status=complete")[0]
                for _ in range(30)
            ]
            one = [user.call("GET", f"raytha-nb/api/tasks/{ids[0]}")[0] for _ in range(60)]
            _, status = user.call("GET", "raytha-nb/api/tasks?limit=1")
            results["list_page_of_100"] = {
                "tasks_in_store": status["total"],
                "first_page": ms(pages),
                "offset_9000": ms(deep),
                "q_and_status_filter": ms(search),
                "peer_get_one_task": ms(one),
                "p99_ratio_vs_peer": round(pct(pages, 0.99) / pct(one, 0.99), 2),
            }
        finally:
            for kernel_id, client in kernels:
                client.stop_channels()
                server.request("DELETE", f"api/kernels/{kernel_id}")
            server.stop()
    return results


def single_row_inserts(path: Path, n: int) -> float:
    """The peer: one INSERT statement per task row, DuckDB file, this process."""
    import duckdb

    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t (id VARCHAR PRIMARY KEY, status VARCHAR, pct DOUBLE, ts TIMESTAMP)")
    started = time.perf_counter()
    for i in range(n):
        con.execute("INSERT INTO t VALUES (?, 'complete', 100, now())", [f"row-{i}"])
    elapsed = time.perf_counter() - started
    con.close()
    return n / elapsed


if __name__ == "__main__":
    text = json.dumps(main(), indent=2)
    print(text)
    (ROOT / "benchmarks" / "server-results.json").write_text(text + "\n")
