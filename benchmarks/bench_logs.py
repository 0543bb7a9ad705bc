"""Log throughput: a task printing N lines as fast as it can, every line stored.

Embedded (this process owns the store) and under a real jupyter server (a kernel-like
subprocess publishing through the kernel API), each against the peer measured in the
same run: the same lines printed to a file. Also the peak memory (VmHWM) of the process
running the task and of the server: log backpressure keeps both bounded.

    python benchmarks/bench_logs.py [--lines 1000000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests._server_helpers import JupyterServer  # noqa: E402

TASK = """
import json, os, resource, sys, time
import raytha_nb as rnb

def loud(n):
    for i in range(n):
        print(i)
    return n

def to_file(n, path):
    with open(path, "w") as out:
        for i in range(n):
            print(i, file=out)

def status(key):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key))

n = int(sys.argv[1])
rnb.wait(rnb.enqueue(lambda: None), timeout=60)  # everything imported and started
before = status("VmRSS")
started = time.perf_counter()
to_file(n, sys.argv[2])
peer = time.perf_counter() - started
started = time.perf_counter()
job = rnb.enqueue(loud, {"n": n})
rnb.wait(job, timeout=600)
ours = time.perf_counter() - started
print(json.dumps({"job": job, "ours": ours, "peer": peer, "hwm_kb": status("VmHWM"),
                  "before_kb": before}))
"""


def vm_hwm_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))


def run_task(env: dict[str, str], lines: int, scratch: Path) -> dict[str, float]:
    import json

    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(TASK), str(lines), str(scratch / "peer.txt")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def stored_lines(db: Path, job: str) -> int:
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute(
            "SELECT count(DISTINCT seq) FROM task_logs WHERE task_id = ?", [job]
        ).fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    opts = parser.parse_args()
    n = opts.lines
    print(
        f"raytha_nb log throughput, {n:,} lines, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
    )

    with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp:
        home = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RAYTHA_NB_DB": str(home / "own.duckdb")}
        for key in ("RAYTHA_NB_URL", "RAYTHA_NB_TOKEN", "RAYTHA_NB_RESULTS"):
            env.pop(key, None)
        embedded = run_task(env, n, home)
        kept = stored_lines(home / "own.duckdb", str(embedded["job"]))

        server = JupyterServer(
            home / "srv", home / "srv" / "db" / "tasks.duckdb", heartbeat_timeout=60
        )
        (home / "srv").mkdir(exist_ok=True)
        server.start()
        try:
            secret = (server.db.parent / f".{server.db.stem}.kernel-secret").read_text().strip()
            kernel_env = {
                **server.env(),
                "RAYTHA_NB_URL": server.url,
                "RAYTHA_NB_TOKEN": secret,
                "RAYTHA_NB_RESULTS": str(server.db.parent / f"{server.db.stem}-results"),
            }
            remote = run_task(kernel_env, n, home)
            page = server.get(f"raytha-nb/api/tasks/{remote['job']}/logs?since={n - 1}")
            remote_last = page["last_seq"]
            server_hwm = vm_hwm_kb(server.proc.pid)
        finally:
            server.stop()
        remote_kept = stored_lines(server.db, str(remote["job"]))

    rows = [
        ("embedded", embedded, kept, None),
        ("under a jupyter server", remote, remote_kept, server_hwm),
    ]
    for name, got, stored, srv in rows:
        rate, peer_rate = n / got["ours"], n / got["peer"]
        print(
            f"  {name:24s} {stored:,}/{n:,} lines stored, {rate:,.0f} lines/s "
            f"vs {peer_rate:,.0f}/s to a file -> {got['ours'] / got['peer']:.1f}x the file's time; "
            f"task process peak RSS {got['hwm_kb'] / 1024:.0f} MB "
            f"({(got['hwm_kb'] - got['before_kb']) / 1024:+.0f} MB over its RSS before the task)"
            + (f", server peak RSS {srv / 1024:.0f} MB" if srv else "")
        )
    print(f"  (the server's last stored seq: {remote_last:,})")


if __name__ == "__main__":
    main()
