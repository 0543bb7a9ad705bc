"""Notebook jobs on a real jupyter server, beside papermill in the same run.

    python benchmarks/bench_notebook_jobs.py            # 5 rounds
    python benchmarks/bench_notebook_jobs.py --quick    # 2 rounds, for a smoke run

1. A 10-cell notebook of trivial cells (one parameter injected): ``POST notebook-jobs``
   -> ``complete`` seen on the server's event stream (a fresh kernel in a server
   worker, progress per cell, the executed notebook and its HTML copy written), beside
   ``papermill.execute_notebook`` of the same notebook and parameters in this process
   (a fresh kernel too, the executed notebook written). Rounds alternate the two; the
   ratio of the medians is the overhead (goal <= 1.2x).
2. Progress events per cell: the ``progress``/``task`` events for the job on the SSE
   stream, and the distinct percent values among them, per code cell; for trivial
   cells (the whole notebook runs within a few of the worker's 0.1 s flushes, which
   coalesce) and for cells of 0.2 s (each cell's start is seen).

Machines here are shared and noisy: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import nbformat
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests._server_helpers import JupyterServer  # noqa: E402

CELLS = 10


def _notebook(folder: Path, cell: str = "x{i} = n + {i}", name: str = "bench") -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    parameters = nbformat.v4.new_code_cell("n = 1")
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters] + [
        nbformat.v4.new_code_cell(cell.format(i=i)) for i in range(CELLS - 1)
    ]
    path = folder / f"{name}.ipynb"
    nbformat.write(notebook, path)
    return path


class Events:
    """The server's SSE stream, read on a thread: (event, data) pairs as they come."""

    def __init__(self, server: JupyterServer) -> None:
        self.queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._response = requests.get(
            f"{server.url}raytha-nb/api/events",
            headers={"Authorization": f"token {server.token}"},
            stream=True,
            timeout=(10, None),
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        event = ""
        try:
            for raw in self._response.iter_lines(decode_unicode=True):
                if raw.startswith("event:"):
                    event = raw.removeprefix("event:").strip()
                elif raw.startswith("data:"):
                    self.queue.put((event, json.loads(raw.removeprefix("data:"))))
        except (requests.RequestException, ValueError):
            return

    def close(self) -> None:
        self._response.close()


def _job(server: JupyterServer, events: Events, name: str = "bench") -> tuple[float, int, int]:
    """Seconds from POST to ``complete`` on the stream; progress events and distinct
    percent values seen for the job."""
    while not events.queue.empty():
        events.queue.get_nowait()
    started = time.perf_counter()
    status, record, _ = server.request(
        "POST", "raytha-nb/api/notebook-jobs", {"path": f"{name}.ipynb", "parameters": {"n": 2}}
    )
    assert status == 201, record
    job, count, percents = record["id"], 0, set()
    while True:
        kind, data = events.queue.get(timeout=120)
        if data.get("id") != job:
            continue
        if kind == "progress":
            count += 1
            percents.add(data["percent_complete"])
        elif kind == "task":
            percents.add(data["percent_complete"])
            if data["status"] in ("complete", "error", "cancelled", "interrupted"):
                assert data["status"] == "complete", data
                return time.perf_counter() - started, count, len(percents)


def _papermill(path: Path, out: Path) -> float:
    import papermill

    started = time.perf_counter()
    papermill.execute_notebook(
        str(path), str(out), parameters={"n": 2}, kernel_name="python3", progress_bar=False
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of 5")
    rounds = 2 if parser.parse_args().quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        server = JupyterServer(home, home / "db" / "tasks.duckdb", heartbeat_timeout=10.0)
        server.start()
        try:
            path = _notebook(home / "notebooks")
            events = Events(server)
            _job(server, events)  # warm-up: the server's first worker, imports on disk
            _papermill(path, home / "warm.ipynb")
            jobs, peers, counts, distinct = [], [], [], []
            for i in range(rounds):
                seconds, count, seen = _job(server, events)
                jobs.append(seconds)
                counts.append(count)
                distinct.append(seen)
                peers.append(_papermill(path, home / f"out-{i}.ipynb"))
            _notebook(home / "notebooks", "import time; time.sleep(0.2)", "slow")
            _, slow_count, slow_seen = _job(server, events, "slow")
            events.close()
        finally:
            server.stop()
    job, peer = statistics.median(jobs), statistics.median(peers)
    code_cells = CELLS + 1  # papermill's injected parameters cell runs too
    print(f"notebook job, {CELLS}-cell notebook, enqueue -> complete: median {job:.2f} s "
          f"(runs: {', '.join(f'{s:.2f}' for s in jobs)})")  # fmt: skip
    print(f"papermill.execute_notebook, same notebook:            median {peer:.2f} s "
          f"(runs: {', '.join(f'{s:.2f}' for s in peers)})")  # fmt: skip
    print(f"ratio notebook job / papermill: {job / peer:.2f}x (goal <= 1.2x)")
    print(f"progress events per code cell ({code_cells} cells): "
          f"{statistics.median(counts) / code_cells:.2f} (median {statistics.median(counts):g} "
          f"events), distinct percents seen per cell: "
          f"{statistics.median(distinct) / code_cells:.2f}")  # fmt: skip
    print(f"same with 0.2 s cells: {slow_count / code_cells:.2f} progress events per cell, "
          f"distinct percents seen per cell: {slow_seen / code_cells:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
