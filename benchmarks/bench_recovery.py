"""Recovery: kill -9 of the server during heavy publishing, restart on the same db and port.

    python benchmarks/bench_recovery.py                 # ~30 s
    python benchmarks/bench_recovery.py --kernels 4 --tasks 800 --down 5

Starts a real `jupyter server` with the extension on 127.0.0.1, in its own process group,
and ``--kernels`` "kernels": plain Python subprocesses with RAYTHA_NB_URL / RAYTHA_NB_TOKEN
/ RAYTHA_NB_RESULTS in their environment that ``import raytha_nb as rnb`` and run many
short tasks (each prints 10-69 lines and returns), up to 32 outstanding at a time: the
real publish path (RemoteBackend + Publisher) without ipykernel. Each kernel records, in
a local file, every task whose final state ``rnb.wait()`` acknowledged (id, status, lines
printed).

Once about a third of all tasks are acknowledged, the server's process group gets
SIGKILL; ``--down`` seconds later the server is started again on the same db and port.
Measured: seconds until ``GET /raytha-nb/api/status`` answers again, how long kernels
took to be acknowledged again (their publisher retries with backoff, 0.5 s doubling to
5 s), and, once every kernel finished, against the store (through REST while the server
runs, then the DuckDB file itself after a clean stop):

* acknowledged final states lost: tasks a kernel saw acknowledged whose stored status is
  not that final state (must be 0);
* log lines lost: lines of acknowledged tasks missing from the store (must be 0);
* besides: duplicated log lines (same task and seq), repeated history rows, tasks left
  active in the store.

``--kills N`` kills and restarts it N times (at 1/(N+2), 2/(N+2), ... of all tasks);
``--keep`` keeps the temp dir (server and kernel logs, the db). Exits 1 if either count
that must be 0 is not, or not every task was acknowledged. Only temp files are written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the helpers shared with bench_scale.py

from bench_scale import Client, GroupServer, kernel_env, reap, spawn, uptime  # noqa: E402

#: Most tasks a kernel has enqueued and not yet seen acknowledged.
OUTSTANDING = 32

KERNEL = textwrap.dedent(
    '''
    """One bench "kernel": many short tasks that print and finish; acknowledged ones go
    to a local file, one JSON line each, as soon as rnb.wait() returns."""
    import collections, json, os, sys, time
    import raytha_nb as rnb
    from raytha_nb._client import RemoteBackend

    name, ack_path, summary_path = sys.argv[1], sys.argv[2], sys.argv[3]
    total, outstanding, wait_timeout, budget = (int(sys.argv[4]), int(sys.argv[5]),
                                                float(sys.argv[6]), float(sys.argv[7]))
    manager = rnb.manager()
    backend = manager.backend
    if not isinstance(backend, RemoteBackend):
        sys.exit(f"not connected to the server: backend is {type(backend).__name__}")

    publishes = []  # (wall-clock time, ok, error)
    plain_publish = backend.publish

    rtts, rows = [], []

    def timed_publish(batch, active):
        p0 = time.perf_counter()
        try:
            reply = plain_publish(batch, active)
        except Exception as exc:
            publishes.append((time.time(), False, f"{type(exc).__name__}: {exc}"[:200]))
            raise
        publishes.append((time.time(), True, None))
        rtts.append(time.perf_counter() - p0)
        rows.append((len(batch.tasks), len(batch.logs)))
        return reply

    backend.publish = timed_publish  # the Publisher calls self._backend.publish

    def chatter(tag, n):
        for i in range(n):
            print(f"{tag} line {i}")
        time.sleep(0.005)
        return n

    acks = open(ack_path, "a", buffering=1)
    pending = collections.deque()
    started = time.monotonic()
    k = timeouts = 0
    longest_wait = 0.0
    while (k < total or pending) and time.monotonic() - started < budget:
        while k < total and len(pending) < outstanding:
            tag, n = f"{name}-{k}", 10 + (k * 7) % 60
            pending.append((rnb.enqueue(chatter, {"tag": tag, "n": n}), tag, n))
            k += 1
        job, tag, n = pending.popleft()
        t0 = time.monotonic()
        try:
            record = rnb.wait(job, timeout=wait_timeout)
        except TimeoutError:
            timeouts += 1
            continue
        longest_wait = max(longest_wait, time.monotonic() - t0)
        acks.write(json.dumps({"id": job, "tag": tag, "status": record.status.value,
                               "lines": n, "t": time.time()}) + "\\n")
    acks.close()
    failed = [p for p in publishes if not p[1]]
    with open(summary_path, "w") as f:
        json.dump({
            "enqueued": k, "unfinished": len(pending), "wait_timeouts": timeouts,
            "longest_wait_s": longest_wait, "publishes": len(publishes),
            "failed_publishes": len(failed),
            "first_failure": failed[0][0] if failed else None,
            "last_failure": failed[-1][0] if failed else None,
            "first_ok_after_failure": next((p[0] for p in publishes if failed and p[1]
                                            and p[0] > failed[-1][0]), None),
            "errors": sorted({p[2].split(":")[0] for p in failed}),
            "last_error": repr(manager.publisher.last_error),
            "rtt_p50": sorted(rtts)[len(rtts) // 2] if rtts else None,
            "rtt_max": max(rtts, default=None),
            "task_rows_per_publish": sum(r[0] for r in rows) / max(1, len(rows)),
            "log_rows_per_publish": sum(r[1] for r in rows) / max(1, len(rows)),
        }, f)
    '''
)


def read_acks(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line being written right now
            pass
    return rows


def rest_statuses(user: Client) -> dict[str, str]:
    """Every task's status as ``GET raytha-nb/api/tasks`` pages show them."""
    statuses: dict[str, str] = {}
    offset: int | None = 0
    while offset is not None:
        status, _, page = user.get(f"raytha-nb/api/tasks?limit=1000&offset={offset}")
        assert status == 200, (status, page)
        statuses.update({t["id"]: t["status"] for t in page["tasks"]})
        offset = page["next_offset"]
    return statuses


def check_file(db: Path, acks: list[dict[str, Any]]) -> dict[str, int]:
    """The counts, from the DuckDB file itself (the server is stopped)."""
    import duckdb
    import pyarrow as pa

    con = duckdb.connect(str(db), read_only=True)
    try:
        acked = pa.table(
            {
                "id": [a["id"] for a in acks],
                "status": [a["status"] for a in acks],
            }
        )
        expected = pa.table(
            {
                "id": [a["id"] for a in acks for _ in range(a["lines"])],
                "text": [f"{a['tag']} line {i}" for a in acks for i in range(a["lines"])],
            }
        )
        con.register("acked", acked)
        con.register("expected", expected)

        def one(sql: str) -> int:
            row = con.execute(sql).fetchone()
            return int(row[0]) if row else -1

        return {
            "acked_states_lost": one(
                "SELECT count(*) FROM acked a LEFT JOIN tasks t USING (id) "
                "WHERE t.status IS DISTINCT FROM a.status"
            ),
            "log_lines_expected": expected.num_rows,
            "log_lines_lost": one(
                "SELECT count(*) FROM expected e ANTI JOIN task_logs l "
                "ON l.task_id = e.id AND l.text = e.text"
            ),
            "log_lines_duplicated": one(
                "SELECT count(*) - count(DISTINCT (task_id, seq)) FROM task_logs"
            ),
            "history_rows_repeated": one(
                "SELECT count(*) - count(DISTINCT (task_id, ts, status)) FROM task_events"
            ),
            "tasks_in_store": one("SELECT count(*) FROM tasks"),
            "tasks_left_active": one(
                "SELECT count(*) FROM tasks WHERE status IN ('enqueued', 'processing')"
            ),
        }
    finally:
        con.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kernels", type=int, default=3, help="kernel processes (2-4)")
    parser.add_argument("--tasks", type=int, default=1500, help="tasks per kernel")
    parser.add_argument("--down", type=float, default=2.0, help="seconds the server stays dead")
    parser.add_argument(
        "--kills",
        type=int,
        default=1,
        help="kill -9 / restart this many times, spread over the run",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, db)")
    options = parser.parse_args()
    print(
        "bench_recovery: kill -9 of the server during heavy publishing; kernels = plain "
        "Python processes running the real publish path (import raytha_nb; rnb.enqueue: "
        "RemoteBackend + Publisher), no ipykernel"
    )
    print(f"machine: {os.cpu_count()} cores; at start: {uptime()}")
    started = time.monotonic()
    total = options.kernels * options.tasks
    budget = 240.0  # a kernel gives up after this many seconds in all
    keep = tempfile.mkdtemp(prefix="bench-recovery-") if options.keep else None
    with (
        contextlib.nullcontext(keep)
        if keep
        else tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp
    ):
        home = Path(tmp)
        if keep:
            print(f"keeping {home}")
        db = home / "tasks.duckdb"
        server = GroupServer(home, db, heartbeat_timeout=30)
        procs: list[subprocess.Popen[bytes]] = []
        user = Client(server.port, server.token)
        try:
            first_ready = time.monotonic()
            server.start()
            first_ready = time.monotonic() - first_ready
            script = home / "kernel.py"
            script.write_text(KERNEL)
            env = kernel_env(server)
            ack_files = [home / f"acks-{k}.jsonl" for k in range(options.kernels)]
            for k in range(options.kernels):
                procs.append(
                    spawn(
                        script,
                        [
                            f"k{k}",
                            str(ack_files[k]),
                            str(home / f"summary-{k}.json"),
                            str(options.tasks),
                            str(OUTSTANDING),
                            "180",
                            str(budget),
                        ],
                        env,
                        home / f"kernel-{k}.log",
                    )
                )

            # Heavy publishing until about a third is acknowledged, then kill -9 (with
            # --kills N: at 1/(N+2), 2/(N+2), ... of all tasks).
            deadline = time.monotonic() + 120
            run_started = time.monotonic()
            outages: list[dict[str, Any]] = []
            for n in range(options.kills):
                kill_at = int(total * (n + 1) / (options.kills + 2))
                while sum(len(read_acks(f)) for f in ack_files) < kill_at:
                    if time.monotonic() > deadline or all(p.poll() is not None for p in procs):
                        raise RuntimeError(
                            "kernels did not get going:\n"
                            + "\n".join(
                                (home / f"kernel-{k}.log").read_text()[-2000:]
                                for k in range(options.kernels)
                            )
                        )
                    time.sleep(0.02)
                acked_before = sum(len(read_acks(f)) for f in ack_files)
                outage: dict[str, Any] = {
                    "acked_before": acked_before,
                    "rate": acked_before / (time.monotonic() - run_started),
                    "load": uptime(),
                    "pid": server.proc.pid,
                    "killed_wall": time.time(),
                }
                killed = time.monotonic()
                server.kill9()
                user.close()
                time.sleep(options.down)
                relaunched = time.monotonic()
                server.launch()
                server.wait_ready(90)
                ready = time.monotonic()
                outage.update(
                    restart_s=ready - relaunched, kill_s=ready - killed, ready_wall=time.time()
                )
                outages.append(outage)
                deadline = time.monotonic() + 120

            codes = reap(procs, budget + 30)
            acks = [a for f in ack_files for a in read_acks(f)]
            summaries = []
            for k in range(options.kernels):
                try:
                    summaries.append(json.loads((home / f"summary-{k}.json").read_text()))
                except (OSError, ValueError):
                    summaries.append({})
            statuses = rest_statuses(user)
            user.close()
            rest_lost = sum(1 for a in acks if statuses.get(a["id"]) != a["status"])
        finally:
            server_errors = sum(
                1
                for line in server.log_text_all().splitlines()
                if "Traceback" in line or "[E " in line or " ERROR " in line
            )
            reap(procs, 5)
            user.close()
            server.stop()
        counts = check_file(db, acks)

    after_kill = [a for a in acks if outages and a["t"] > outages[0]["killed_wall"]]
    span = max(a["t"] for a in acks) - min(a["t"] for a in acks) if acks else 0.0
    print(f"\nserver first start: {first_ready:.2f} s until raytha-nb/api/status answered")
    for n, outage in enumerate(outages):
        print(f"kill {n + 1}: load {outage['load'].partition('load average:')[2].strip()}")
        print(
            f"  killed server PID {outage['pid']} (its own process group, SIGKILL) after "
            f"{outage['acked_before']} of {total} tasks acknowledged "
            f"({outage['rate']:.0f} tasks/s acknowledged by {options.kernels} kernels)"
        )
        print(f"  down for {options.down:.1f} s, then restarted on the same db and port")
        print(f"  restart -> GET raytha-nb/api/status answers: {outage['restart_s']:6.2f} s")
        print(f"  kill    -> GET raytha-nb/api/status answers: {outage['kill_s']:6.2f} s")
        for k in range(options.kernels):
            mine = [a["t"] for a in acks if a["tag"].startswith(f"k{k}-")]
            first = min((t for t in mine if t > outage["ready_wall"]), default=None)
            back = f"{first - outage['ready_wall']:5.2f} s" if first else "never"
            print(f"  kernel {k}: first acknowledgement after the server was ready: {back}")
    for k, summary in enumerate(summaries):
        print(
            f"kernel {k}: {summary.get('publishes', '?')} publishes, "
            f"{summary.get('failed_publishes', '?')} failed "
            f"({', '.join(summary.get('errors', [])) or '-'}), longest rnb.wait "
            f"{summary.get('longest_wait_s', float('nan')):.2f} s, "
            f"{summary.get('wait_timeouts', '?')} wait timeouts, exit code {codes[k]}; "
            f"publish round trip p50 {1e3 * (summary.get('rtt_p50') or 0):.0f} ms, max "
            f"{1e3 * (summary.get('rtt_max') or 0):.0f} ms, "
            f"{summary.get('task_rows_per_publish', 0):.1f} task rows and "
            f"{summary.get('log_rows_per_publish', 0):.0f} log lines per publish"
        )
    print(
        f"tasks acknowledged: {len(acks)} of {total}; {len(after_kill)} of them after "
        f"the (first) kill; {len(acks) / max(span, 1e-9):.0f} tasks/s acknowledged overall"
    )
    print(f"server log: {server_errors} lines with ERROR or Traceback")
    print(
        f"\nACKNOWLEDGED FINAL STATES LOST: {counts['acked_states_lost']}  (must be 0; "
        f"through REST before the clean stop: {rest_lost})"
    )
    print(
        f"LOG LINES LOST:                 {counts['log_lines_lost']}  (must be 0; of "
        f"{counts['log_lines_expected']} lines printed by acknowledged tasks)"
    )
    print(f"log lines duplicated (same task, seq): {counts['log_lines_duplicated']}")
    print(f"history rows repeated (same task, ts, status): {counts['history_rows_repeated']}")
    print(
        f"tasks in the store: {counts['tasks_in_store']}, left active: "
        f"{counts['tasks_left_active']}"
    )
    print(f"at end: {uptime()}; took {time.monotonic() - started:.0f} s")
    ok = counts["acked_states_lost"] == 0 and counts["log_lines_lost"] == 0 and len(acks) == total
    if not ok:
        print("FAILED: something acknowledged was lost, or not every task was acknowledged")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
