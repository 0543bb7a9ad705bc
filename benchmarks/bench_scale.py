"""Server scale: 1, 5, 10, 20 kernels, each with 4 tasks reporting progress at 10 Hz.

    python benchmarks/bench_scale.py                      # ~2 minutes
    python benchmarks/bench_scale.py --kernels 1,5 --seconds 5

For each kernel count, a fresh `jupyter server` with the extension on 127.0.0.1 and
that many "kernels": plain Python subprocesses that get RAYTHA_NB_URL / RAYTHA_NB_TOKEN /
RAYTHA_NB_RESULTS in their environment and run ``import raytha_nb as rnb`` and
``rnb.enqueue(...)`` of 4 reporting tasks. That is the real publish path
(RemoteBackend + Publisher, every 0.2 s) without ipykernel's own weight (no ZMQ, no
IOPub, no kernel heartbeat). Over a window of ``--seconds`` it measures:

* server CPU: utime + stime of the server process (/proc/<pid>/stat), as % of one core,
  and of its main thread (tornado's event loop) alone; a 3 s baseline of the same server
  with no kernels and the same request rate, so "server CPU per publish" is
  (window - baseline) / publishes; beside it the kernels' CPU and the whole machine's
  busy % (/proc/stat: all processes, including whatever else runs on this shared machine);
* ``GET /raytha-nb/api/tasks/{id}`` latency, a client polling a random running task
  ~20 times a second; peer: Jupyter's own ``GET /api/status``, on the same server, same
  moment (each tick does one of each); every 4th tick also ``GET tasks?limit=20``, a read
  that (unlike tasks/{id} of a running task) runs on one of the server's store threads;
* report -> REST: every report is ``status_info=repr(time.time())``; when the poller sees
  a value it has not seen before it records now - that value (the age of what REST shows:
  up to one 0.1 s report period plus one 0.2 s flush plus the path's queueing);
* the kernels' side of it: publishes (one DuckDB commit each, since every flush carries
  progress rows) per second, each publish's round trip as the kernel timed it, and
  "pile-ups": moments when at least half of the kernels' publishes were slow (> 100 ms)
  at once, with what the poller's requests took meanwhile (fast: the event loop answered
  and the queue is on the publish path; slow: the whole process or machine stalled);
* a peer for the commit itself, right after the window: the wall time of one
  ``Store.apply`` of a 4-task progress batch on a private store in this process.

Then one line saying where the numbers bend and why (judged on medians and rates).

Machines here are shared and noisy: read the ratios and the trend, not the absolute times.
Only new files are written, in a temp dir; nothing is saved beside this script.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests._server_helpers import JupyterServer  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
#: Tasks per kernel (also RAYTHA_NB_WORKERS: every task runs at once).
TASKS = 4
#: Nominal publishes per kernel per second while tasks run (flush interval 0.2 s).
NOMINAL_PUBLISH_HZ = 5.0
#: Seconds of the no-kernel baseline of server CPU, per kernel count.
IDLE_SECONDS = 3.0


# -- shared helpers (bench_recovery.py imports these) ------------------------------------


class GroupServer(JupyterServer):
    """``jupyter server`` as tests/_server_helpers.py starts it, but in its own process
    group (session), so the benchmark can kill exactly that group and nothing else."""

    def start(self, timeout: float = 90) -> GroupServer:
        self.launch()
        self.wait_ready(timeout)
        return self

    def launch(self) -> None:
        args = [
            sys.executable,
            "-m",
            "jupyter_server",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--port-retries",
            "0",
            "--no-browser",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.home / 'notebooks'}",
            f"--RaythaNbApp.heartbeat_timeout={self.heartbeat_timeout}",
            "--RaythaNbApp.reap_interval=0.25",
        ]
        if os.getuid() == 0:
            args.append("--allow-root")
        log = (self.home / "server.log").open("ab")
        self.proc = subprocess.Popen(
            args, env=self.env(), stdout=log, stderr=log, start_new_session=True
        )
        log.close()

    def wait_ready(self, timeout: float) -> float:
        """Seconds until ``GET raytha-nb/api/status`` answers 200."""
        started = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("jupyter server exited:\n" + self.log_text())
            try:
                status, _, _ = self.request("GET", "raytha-nb/api/status")
                if status == 200:
                    return time.monotonic() - started
            except OSError:
                pass
            if time.monotonic() - started > timeout:
                raise TimeoutError("server not ready:\n" + self.log_text())
            time.sleep(0.02)

    def log_text_all(self) -> str:
        path = self.home / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill9(self) -> None:
        """SIGKILL the server's own process group (only it: kernels here are ours)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        super().stop()
        self.kill9()  # if SIGTERM did not do it; a no-op when it did


def kernel_env(server: JupyterServer) -> dict[str, str]:
    """What a kernel started by this server would find in its environment (the secret
    file sits beside the db, as ExternalKernel in tests/_server_helpers.py reads it)."""
    secret = (server.db.parent / f".{server.db.stem}.kernel-secret").read_text()
    return {
        **server.env(),
        "RAYTHA_NB_URL": server.url,
        "RAYTHA_NB_TOKEN": secret,
        "RAYTHA_NB_RESULTS": str(server.db.parent / f"{server.db.stem}-results"),
        "RAYTHA_NB_WORKERS": str(TASKS),
        "PYTHONUNBUFFERED": "1",
    }


def spawn(script: Path, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A plain Python "kernel" in its own session (so cleanup kills its group only)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, str(script), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def reap(procs: list[subprocess.Popen[bytes]], timeout: float) -> list[int | None]:
    """Wait up to ``timeout`` s in all for the processes to exit, then SIGKILL the groups
    of those still running; return the exit codes (None: had to be killed)."""
    deadline = time.monotonic() + timeout
    codes: list[int | None] = []
    for proc in procs:
        try:
            codes.append(proc.wait(max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            codes.append(None)
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)
    return codes


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """utime + stime of one process (or of one of its threads), in seconds (0 once gone)."""
    where = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        fields = Path(where).read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of stat(5)


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already in user
    return total - idle, total


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


class Client:
    """One keep-alive HTTP connection to the server; returns (status, seconds, body)."""

    def __init__(self, port: int, token: str, timeout: float = 10) -> None:
        self.port, self.timeout = port, timeout
        self.headers = {"Authorization": f"token {token}"}
        self.con: http.client.HTTPConnection | None = None

    def get(self, path: str) -> tuple[int, float, Any]:
        for attempt in (1, 2):
            if self.con is None:
                self.con = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            started = time.perf_counter()
            try:
                self.con.request("GET", "/" + path, headers=self.headers)
                response = self.con.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException):
                self.con.close()
                self.con = None
                if attempt == 2:
                    raise
                continue
            elapsed = time.perf_counter() - started
            try:
                body = json.loads(data) if data else None
            except ValueError:
                body = data
            return response.status, elapsed, body
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the kernel ---------------------------------------------------------------------------

KERNEL = textwrap.dedent(
    '''
    """One bench "kernel": 4 tasks reporting at 10 Hz until the stop file appears."""
    import json, os, sys, time
    import raytha_nb as rnb
    from raytha_nb._client import RemoteBackend

    stop_file, ready_file, stats_file, max_seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    manager = rnb.manager()
    backend = manager.backend
    if not isinstance(backend, RemoteBackend):
        sys.exit(f"not connected to the server: backend is {type(backend).__name__}")

    publishes = []  # (wall-clock start, seconds, ok, rows)
    plain_publish = backend.publish

    def timed_publish(batch, active):
        t0, p0 = time.time(), time.perf_counter()
        ok = False
        try:
            reply = plain_publish(batch, active)
            ok = True
            return reply
        finally:
            publishes.append((t0, time.perf_counter() - p0, ok, len(batch.progress) + len(batch.tasks)))

    backend.publish = timed_publish  # the Publisher calls self._backend.publish

    def reporter(max_seconds):
        deadline = time.monotonic() + max_seconds
        due = time.monotonic()
        i = 0
        while time.monotonic() < deadline and not os.path.exists(stop_file):
            rnb.progress(i % 100, info=repr(time.time()))
            i += 1
            due += 0.1
            time.sleep(max(0.0, due - time.monotonic()))
        return i

    ids = [rnb.enqueue(reporter, {"max_seconds": max_seconds}) for _ in range(TASKS)]
    with open(ready_file + ".tmp", "w") as f:
        json.dump(ids, f)
    os.replace(ready_file + ".tmp", ready_file)
    reports = [rnb.result(i, timeout=max_seconds + 60) for i in ids]
    with open(stats_file, "w") as f:
        json.dump({"publishes": publishes, "reports": reports,
                   "last_error": repr(manager.publisher.last_error)}, f)
    '''
).replace("TASKS", str(TASKS))


def serial_commit_seconds(folder: Path, rounds: int = 100) -> float:
    """Median wall time of one ``Store.apply`` of a 4-task progress batch (what one
    kernel's publish commits) on a private store file in this process, measured right
    after the window, under the same machine load. The server runs every publish's
    commit under one lock (TaskService._lock around Store.apply), so 1 / this is the
    most commits a second its one writer can do."""
    from raytha_nb.model import TaskStatus
    from raytha_nb.protocol import Batch, ProgressRow
    from raytha_nb.store import Store
    from tests._server_helpers import live_task

    store = Store(folder / "peer.duckdb")
    try:
        tasks = [live_task(f"peer {i}", status=TaskStatus.PROCESSING) for i in range(TASKS)]
        store.apply(Batch(tasks=[t.row(time.time()) for t in tasks]))
        times = []
        for n in range(rounds):
            batch = Batch(
                progress=[
                    ProgressRow(t.id, 1, repr(time.time()), n % 100, time.time()) for t in tasks
                ]
            )
            started = time.perf_counter()
            store.apply(batch)
            times.append(time.perf_counter() - started)
        return pct(times, 0.5)
    finally:
        store.close()


def pileups(
    publishes: list[list[Any]], kernels: int, slow: float = 0.1
) -> list[tuple[float, float]]:
    """Pile-ups: runs of overlapping slow publishes (> ``slow`` s) that hold up at
    least half of the kernels (and two) at once; their lengths in seconds. A per-request
    cost slows publishes one by one; a pile-up (publishes queued behind each other, or
    the server not answering anyone) slows every kernel's publish at the same moment. Returns (start, end) wall-clock times."""
    spans = sorted((p[0], p[0] + p[1], p[4]) for p in publishes if p[1] > slow)
    found: list[tuple[float, float]] = []
    i = 0
    while i < len(spans):
        start, end, who = spans[i][0], spans[i][1], {spans[i][2]}
        i += 1
        while i < len(spans) and spans[i][0] <= end:
            end = max(end, spans[i][1])
            who.add(spans[i][2])
            i += 1
        if len(who) >= max(2, kernels / 2):
            found.append((start, end))
    return found


def measure(count: int, seconds: float, tmp: Path) -> dict[str, Any]:
    home = tmp / f"k{count}"
    home.mkdir()
    server = GroupServer(home, home / "tasks.duckdb", heartbeat_timeout=60)
    procs: list[subprocess.Popen[bytes]] = []
    stop_file = home / "stop"
    user = Client(server.port, server.token)
    try:
        server.start()
        # Baseline: the server with no kernels, answering the poller's 40 requests a
        # second (2 x GET /api/status per tick), so the window's CPU can be split into
        # what the poller costs and what the publishes cost.
        time.sleep(1.0)
        idle_cpu0, idle0 = cpu_seconds(server.proc.pid), time.monotonic()
        tick = idle0
        while time.monotonic() - idle0 < IDLE_SECONDS:
            user.get("api/status")
            user.get("api/status")
            tick += 0.05
            time.sleep(max(0.0, tick - time.monotonic()))
        idle_pct = 100 * (cpu_seconds(server.proc.pid) - idle_cpu0) / (time.monotonic() - idle0)

        script = home / "kernel.py"
        script.write_text(KERNEL)
        env = kernel_env(server)
        max_seconds = seconds + 120  # a bound if the stop file never comes
        for k in range(count):
            procs.append(
                spawn(
                    script,
                    [
                        str(stop_file),
                        str(home / f"ready-{k}"),
                        str(home / f"stats-{k}"),
                        str(max_seconds),
                    ],
                    env,
                    home / f"kernel-{k}.log",
                )
            )
        # All tasks running and visible through REST before the window opens.
        deadline = time.monotonic() + 90
        ids: list[str] = []
        for k, proc in enumerate(procs):
            ready = home / f"ready-{k}"
            while not ready.exists():
                if proc.poll() is not None:
                    raise RuntimeError((home / f"kernel-{k}.log").read_text()[-3000:])
                if time.monotonic() > deadline:
                    raise TimeoutError(f"kernel {k} did not start its tasks")
                time.sleep(0.05)
            ids += json.loads(ready.read_text())
        for job in ids:
            while True:
                status, _, task = user.get(f"raytha-nb/api/tasks/{job}")
                if status == 200 and task["status"] == "processing" and task["status_info"]:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"task {job} never showed as processing")
                time.sleep(0.02)
        time.sleep(1.0)  # let the start-up burst (imports, first publishes) pass

        # The window.
        pid = server.proc.pid
        server_cpu0 = cpu_seconds(pid)
        loop_cpu0 = cpu_seconds(pid, pid)  # the main thread: tornado's event loop
        kernel_cpu0 = sum(cpu_seconds(p.pid) for p in procs)
        busy0, total0 = machine_ticks()
        load0 = os.getloadavg()[0]
        wall0, mono0 = time.time(), time.monotonic()
        ours: list[float] = []
        peer: list[float] = []
        ages: list[float] = []
        errors: dict[int, int] = {}
        seen: set[str] = set()
        polls: list[tuple[float, float]] = []  # (wall-clock start, seconds) of every poll
        listing: list[float] = []
        rng = random.Random(count)
        tick = mono0
        while time.monotonic() - mono0 < seconds:
            job = rng.choice(ids)
            asked = time.time()
            status, elapsed, task = user.get(f"raytha-nb/api/tasks/{job}")
            now = time.time()
            polls.append((asked, elapsed))
            if status == 200:
                ours.append(elapsed)
                info = task.get("status_info")
                if info and info not in seen and task["status"] == "processing":
                    seen.add(info)
                    ages.append(now - float(info))
            else:
                errors[status] = errors.get(status, 0) + 1
            asked = time.time()
            status, elapsed, _ = user.get("api/status")
            polls.append((asked, elapsed))
            if status == 200:
                peer.append(elapsed)
            else:
                errors[status] = errors.get(status, 0) + 1
            if len(polls) % 8 == 0:  # every 4th tick: a read that runs on a store thread
                status, elapsed, _ = user.get("raytha-nb/api/tasks?limit=20")
                if status == 200:
                    listing.append(elapsed)
                else:
                    errors[status] = errors.get(status, 0) + 1
            tick += 0.05  # ~20 polls a second of each
            time.sleep(max(0.0, tick - time.monotonic()))
        window = time.monotonic() - mono0
        wall1 = time.time()
        server_cpu = cpu_seconds(pid) - server_cpu0
        loop_cpu = cpu_seconds(pid, pid) - loop_cpu0
        kernel_cpu = sum(cpu_seconds(p.pid) for p in procs) - kernel_cpu0
        busy1, total1 = machine_ticks()
        load1 = os.getloadavg()[0]
        commit = serial_commit_seconds(home / "peer")  # while the kernels still publish

        stop_file.touch()
        codes = reap(procs, 60)
        publishes: list[list[Any]] = []
        failed_kernels = 0
        for k in range(count):
            try:
                stats = json.loads((home / f"stats-{k}").read_text())
                publishes += [[*row, k] for row in stats["publishes"]]
            except (OSError, ValueError):
                failed_kernels += 1
        in_window = [p for p in publishes if wall0 <= p[0] <= wall1]
        rtts = [p[1] for p in in_window if p[2]]
        return {
            "kernels": count,
            "tasks": len(ids),
            "window_s": window,
            "server_cpu_pct": 100 * server_cpu / window,
            "server_idle_pct": idle_pct,
            "server_loop_pct": 100 * loop_cpu / window,
            "kernels_cpu_pct": 100 * kernel_cpu / window,
            "machine_busy_pct": 100 * (busy1 - busy0) / max(1, total1 - total0),
            "load": (load0, load1),
            "get_task": ours,
            "list": listing,
            "peer": peer,
            "ages": ages,
            "errors": errors,
            "publishes_per_s": len(in_window) / window,
            "commit_s": commit,
            "failed_publishes": sum(1 for p in in_window if not p[2]),
            "publish_rtt": rtts,
            "pileups": (found := pileups(in_window, count)),
            "polls_in_pileups": [
                elapsed
                for asked, elapsed in polls
                if any(a < asked + elapsed and asked < b for a, b in found)
            ],
            "kernel_exit_codes": codes,
            "kernels_without_stats": failed_kernels,
        }
    finally:
        stop_file.touch()
        reap(procs, 10)
        user.close()
        server.stop()


def per_publish_ms(r: dict[str, Any]) -> float:
    spent = (r["server_cpu_pct"] - r["server_idle_pct"]) / 100  # core-seconds per second
    return 1000 * spent / r["publishes_per_s"] if r["publishes_per_s"] else float("nan")


def ms(value: float) -> str:
    return f"{value * 1000:8.1f}"


def print_table(r: dict[str, Any]) -> None:
    n = r["kernels"]
    ours, peer, ages, rtt = r["get_task"], r["peer"], r["ages"], r["publish_rtt"]
    print(
        f"\n== {n} kernel(s), {r['tasks']} tasks at 10 Hz, {r['window_s']:.1f} s window "
        f"(load avg {r['load'][0]:.2f} -> {r['load'][1]:.2f}) =="
    )
    print(f"  {'':34} {'p50 ms':>8} {'p99 ms':>8} {'n':>6}")
    print(
        f"  {'GET raytha-nb/api/tasks/{id}':34} {ms(pct(ours, 0.5))} {ms(pct(ours, 0.99))} {len(ours):6}"
    )
    print(
        f"  {'peer: GET /api/status':34} {ms(pct(peer, 0.5))} {ms(pct(peer, 0.99))} {len(peer):6}"
    )
    print(
        f"  {'  ratio ours / peer':34} {pct(ours, 0.5) / pct(peer, 0.5):8.2f} "
        f"{pct(ours, 0.99) / pct(peer, 0.99):8.2f}"
    )
    print(
        f"  {'GET raytha-nb/api/tasks?limit=20':34} {ms(pct(r['list'], 0.5))} "
        f"{ms(pct(r['list'], 0.99))} {len(r['list']):6}  (5 Hz; runs on a store thread)"
    )
    print(
        f"  {'report -> REST (age seen)':34} {ms(pct(ages, 0.5))} {ms(pct(ages, 0.99))} {len(ages):6}"
    )
    print(
        f"  {'kernel publish round trip':34} {ms(pct(rtt, 0.5))} {ms(pct(rtt, 0.99))} {len(rtt):6}"
    )
    nominal = NOMINAL_PUBLISH_HZ * n
    print(
        f"  publishes (= DuckDB commits) /s : {r['publishes_per_s']:6.1f}  "
        f"({r['publishes_per_s'] / n:.2f} per kernel; 0.2 s interval -> at most {nominal:.0f})"
    )
    print(
        f"  server CPU                      : {r['server_cpu_pct']:6.1f} % of one core "
        f"(no kernels, same poller: {r['server_idle_pct']:.1f} %)"
    )
    print(
        f"    of which the event-loop thread: {r['server_loop_pct']:6.1f} % (HTTP, auth, JSON "
        "decode; the rest: store threads and DuckDB's own)"
    )
    print(
        f"  server CPU per publish          : {per_publish_ms(r):6.1f} ms "
        "((window - baseline) / publishes)"
    )
    print(
        f"  one commit, serial (peer)       : {r['commit_s'] * 1e3:6.1f} ms wall (Store.apply of "
        f"4 progress rows, this process): the one writer is "
        f"~{100 * r['publishes_per_s'] * r['commit_s']:.0f}% busy"
    )
    if r["kernels"] > 1:
        found = [b - a for a, b in r["pileups"]]
        inside = r["polls_in_pileups"]
        print(
            f"  publish pile-ups                : {len(found):6} (>= half the kernels' publishes "
            f"slow > 100 ms at once), {sum(found):.1f} s in all, longest "
            f"{max(found, default=0) * 1e3:.0f} ms"
        )
        if inside:
            print(
                f"    the poller's requests during them: {len(inside)}, p50 "
                f"{pct(inside, 0.5) * 1e3:.1f} ms, max {max(inside) * 1e3:.0f} ms (fast: the "
                "event loop answered; slow: the whole process or machine stalled)"
            )
    print(f"  kernels' CPU (all {n:2})            : {r['kernels_cpu_pct']:6.1f} % of one core")
    print(f"  machine busy (2 cores, everyone): {r['machine_busy_pct']:6.1f} %")
    if r["errors"] or r["failed_publishes"] or r["kernels_without_stats"]:
        print(
            f"  !! HTTP errors {r['errors']}, failed publishes {r['failed_publishes']}, "
            f"kernels without stats {r['kernels_without_stats']}, exit codes {r['kernel_exit_codes']}"
        )


def bend(results: list[dict[str, Any]]) -> str:
    """One line: where the numbers stop scaling, and the measured reason(s). Judged on
    medians and rates (p99s of a few hundred samples on a shared machine swing with
    whatever else runs); p99s are in the tables."""
    base = results[0]
    b_age = pct(base["ages"], 0.5)
    b_rtt = pct(base["publish_rtt"], 0.5)
    b_ratio = pct(base["get_task"], 0.5) / pct(base["peer"], 0.5)
    b_rate = base["publishes_per_s"] / base["kernels"]
    for r in results[1:]:
        n = r["kernels"]
        age, rtt = pct(r["ages"], 0.5), pct(r["publish_rtt"], 0.5)
        ratio = pct(r["get_task"], 0.5) / pct(r["peer"], 0.5)
        per_kernel = r["publishes_per_s"] / n
        symptoms = []
        if age > 1.5 * b_age:
            symptoms.append(f"report->REST p50 {b_age * 1e3:.0f} -> {age * 1e3:.0f} ms")
        if rtt > 3 * b_rtt:
            symptoms.append(f"publish round trip p50 {b_rtt * 1e3:.0f} -> {rtt * 1e3:.0f} ms")
        if per_kernel < 0.9 * b_rate:
            symptoms.append(f"publishes per kernel {b_rate:.2f} -> {per_kernel:.2f}/s")
        if ratio > 2 * b_ratio:  # against the peer: the machine's noise hits both
            symptoms.append(f"GET tasks/{{id}} p50 / peer p50 {b_ratio:.1f} -> {ratio:.1f}")
        if not symptoms:
            continue
        store_side = r["server_cpu_pct"] - r["server_loop_pct"]
        why = [
            f"the server process uses {r['server_cpu_pct']:.0f}% of a core, "
            f"{store_side:.0f} points of it off the event loop (store threads + DuckDB: "
            f"{10 * store_side / max(r['publishes_per_s'], 1e-9):.1f} ms per commit, nearly all "
            "inside the one lock around Store.apply, so commits are serial)"
        ]
        if r["machine_busy_pct"] > 85:
            why.append(
                f"the 2-core machine is {r['machine_busy_pct']:.0f}% busy (kernels "
                f"{r['kernels_cpu_pct']:.0f}% of a core, server {r['server_cpu_pct']:.0f}%, the "
                "rest other processes), so that serial writer gets less than a core and each "
                f"commit's wall time stretches (peer commit here now {r['commit_s'] * 1e3:.1f} ms)"
            )
        if r["pileups"]:
            lengths = [b - a for a, b in r["pileups"]]
            inside = r["polls_in_pileups"]
            loop = (
                f", while the poller's GETs in them took p50 {pct(inside, 0.5) * 1e3:.0f} ms "
                "(the event loop kept answering: the queue is on the publish path)"
                if inside
                else ""
            )
            why.append(
                f"publishes piled up for {sum(lengths):.1f} s of the {r['window_s']:.0f} s "
                f"window (longest {max(lengths) * 1e3:.0f} ms){loop}"
            )
        listing = pct(r["list"], 0.5)
        if listing > 3 * pct(base["list"], 0.5):
            why.append(
                f"reads that need a store thread wait behind the queued publishes (GET tasks?"
                f"limit=20 p50 {pct(base['list'], 0.5) * 1e3:.0f} -> {listing * 1e3:.0f} ms)"
            )
        why.append(f"{r['publishes_per_s']:.0f} commits/s achieved of {NOMINAL_PUBLISH_HZ * n:.0f}")
        return f"BENDS at {n} kernels: {'; '.join(symptoms)}. Why: {'; '.join(why)}. " + capacity(
            results
        )
    last = results[-1]
    return (
        f"NO BEND up to {last['kernels']} kernels: report->REST p50 within 1.5x, publish round "
        "trip p50 within 3x, publishes per kernel within 90% and GET p50 vs peer within 2x "
        f"of 1 kernel's; at {last['kernels']} the server uses {last['server_cpu_pct']:.0f}% "
        f"of a core for {last['publishes_per_s']:.0f} commits/s, machine "
        f"{last['machine_busy_pct']:.0f}% busy. " + capacity(results)
    )


def capacity(results: list[dict[str, Any]]) -> str:
    """Where one core would run out, from the server CPU each publish cost at the busiest
    count measured (there, the publishes' CPU is the largest share of the server's)."""
    busiest = max(results, key=lambda r: r["publishes_per_s"])
    cost = per_publish_ms(busiest)
    if not cost == cost or cost <= 0:
        return ""
    per_s = 1000 / cost
    return (
        f"At ~{cost:.1f} ms of server CPU per publish ({busiest['kernels']} kernels), one core "
        f"is used up at ~{per_s:.0f} commits/s = ~{per_s / NOMINAL_PUBLISH_HZ:.0f} kernels with "
        "running tasks."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kernels", default="1,5,10,20", help="comma-separated kernel counts")
    parser.add_argument("--seconds", type=float, default=15, help="measurement window per count")
    options = parser.parse_args()
    counts = [int(c) for c in options.kernels.split(",") if c.strip()]
    print(
        "bench_scale: server scale, kernels = plain Python processes running the real publish "
        "path (import raytha_nb; rnb.enqueue: RemoteBackend + Publisher), no ipykernel"
    )
    print(f"machine: {os.cpu_count()} cores; at start: {uptime()}")
    started = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for count in counts:
            result = measure(count, options.seconds, Path(tmp))
            print_table(result)
            results.append(result)
    print(
        "\nsummary (ms; CPU in % of one core; ms/pub: server CPU per publish; commit: one "
        "Store.apply of 4 progress rows, wall, in this process after the window)"
    )
    print(
        f"{'kernels':>7} {'GET p50':>8} {'GET p99':>8} {'peer p99':>8} {'ratio99':>7} "
        f"{'age p50':>8} {'age p99':>8} {'pub/s':>6} {'rtt p99':>8} {'server':>6} "
        f"{'ms/pub':>6} {'commit':>6} {'kernels':>7} {'machine':>7}"
    )
    for r in results:
        print(
            f"{r['kernels']:7} {ms(pct(r['get_task'], 0.5))} {ms(pct(r['get_task'], 0.99))} "
            f"{ms(pct(r['peer'], 0.99))} {pct(r['get_task'], 0.99) / pct(r['peer'], 0.99):7.2f} "
            f"{ms(pct(r['ages'], 0.5))} {ms(pct(r['ages'], 0.99))} {r['publishes_per_s']:6.1f} "
            f"{ms(pct(r['publish_rtt'], 0.99))} {r['server_cpu_pct']:6.1f} {per_publish_ms(r):6.1f} "
            f"{r['commit_s'] * 1e3:6.1f} {r['kernels_cpu_pct']:7.1f} {r['machine_busy_pct']:6.1f}%"
        )
    if len(results) > 1:
        print(bend(results))
    print(f"at end: {uptime()}; took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
