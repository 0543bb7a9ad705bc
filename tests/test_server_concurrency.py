"""Four kernels x 200 tasks with progress and logs, all through one server's store."""

from __future__ import annotations

import ast
import time
from pathlib import Path

from raytha_nb.store import Store

from ._server_helpers import JupyterServer, run

KERNELS = 4
TASKS = 200
LINES = 3

WORK = f"""
import raytha_nb as rnb

def work(i):
    for step in range(5):
        rnb.progress(20 * (step + 1), info=f"part {{step}}", step=step)
    for n in range({LINES}):
        print(f"task {{i}} line {{n}}")
    return i

ids = [rnb.enqueue(work, {{"i": i}}, name=f"load-{{i}}") for i in range({TASKS})]
len(ids)
"""

FINISH = """
[rnb.wait(i, 120).status.value for i in ids].count("complete")
"""


def test_four_kernels_two_hundred_tasks_each(tmp_path: Path) -> None:
    db = tmp_path / "tasks.duckdb"
    server = JupyterServer(tmp_path, db, heartbeat_timeout=60).start()
    clients = []
    try:
        kernels = [server.start_kernel() for _ in range(KERNELS)]
        clients = [client for _, client in kernels]
        for client in clients:  # all four enqueue before any waits: they run concurrently
            assert run(client, WORK) == str(TASKS)
        for client in clients:
            assert ast.literal_eval(run(client, FINISH, timeout=180)) == TASKS
        page = server.get("raytha-nb/api/tasks?status=complete&limit=1")
        assert page["total"] == KERNELS * TASKS
        deadline = time.monotonic() + 5
        while server.get("raytha-nb/api/status")["tasks"] != {"processing": 0, "enqueued": 0}:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        kernel_ids = {kernel_id for kernel_id, _ in kernels}
    finally:
        for client in clients:
            client.stop_channels()
        server.stop()

    store = Store(db, recover=False)  # the server let go of the file
    try:
        rows = store.sql(
            "SELECT kernel_id, count(*), count(*) FILTER (status = 'complete') "
            "FROM tasks GROUP BY kernel_id"
        ).fetchall()
        assert {row[0] for row in rows} == kernel_ids
        assert all(row[1] == TASKS and row[2] == TASKS for row in rows), rows
        not_full = "SELECT id, status, percent_complete FROM tasks WHERE percent_complete <> 100"
        assert store.sql(not_full).fetchall() == []
        history = store.sql(
            "SELECT task_id, list(status ORDER BY ts, rowid) FROM task_events GROUP BY task_id"
        ).fetchall()
        assert len(history) == KERNELS * TASKS
        for _, statuses in history:
            assert statuses[0] == "enqueued" and statuses[-1] == "complete", statuses
            assert "processing" in statuses
        logs = store.sql(
            "SELECT task_id, list(seq ORDER BY seq) FROM task_logs GROUP BY task_id"
        ).fetchall()
        assert len(logs) == KERNELS * TASKS
        assert all(seqs == list(range(1, LINES + 1)) for _, seqs in logs)
    finally:
        store.close()
