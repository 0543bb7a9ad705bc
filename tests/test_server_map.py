"""A map's children through a real server: their rows travel as rows (a kernel's
publisher writes them as blocks of columns), a waiting child is cancelled over REST,
and a child that runs across flushes is seen running."""

from __future__ import annotations

import ast
from pathlib import Path

from raytha_nb.store import Store

from ._server_helpers import JupyterServer, run

ITEMS = 3_000

MAP = f"""
import time
import raytha_nb as rnb

def work(i):
    # Child 1 runs across several flushes (stored as running meanwhile); with limit=2
    # the others take ~6 s, so the last one waits long enough to be cancelled.
    time.sleep(1.5 if i == 1 else 0.004)
    if i % 500 == 0:
        print(f"line of {{i}}")
    return i * 2

group = rnb.map(work, range({ITEMS}), limit=2, show=False)
group
"""


def test_a_map_through_the_server(tmp_path: Path) -> None:
    db = tmp_path / "tasks.duckdb"
    server = JupyterServer(tmp_path, db, heartbeat_timeout=60).start()
    client = None
    try:
        _, client = server.start_kernel()
        group = ast.literal_eval(run(client, MAP))
        slow = group[:24] + f"{1:012x}"
        last = group[:24] + f"{ITEMS - 1:012x}"
        assert server.wait_for(slow, {"processing"}, 30)["worker"]
        # The last child waits behind limit=2; the server passes the cancel to its kernel.
        assert server.task(last)["status"] == "enqueued"
        status, reply, _ = server.request("POST", f"raytha-nb/api/tasks/{last}/cancel", {})
        assert status == 200 and reply["cancel_requested"] is True
        assert server.wait_for(last, {"cancelled"}, 20)["status_info"]
        done = run(client, "rnb.wait(group, 120).status.value", timeout=150)
        assert done == "'cancelled'"  # (a cancelled child makes the group cancelled)
        run(client, "rnb.wait_all(60); None")  # every child stored
        logs = server.get(f"raytha-nb/api/tasks/{group[:24]}{500:012x}/logs")["lines"]
        assert [line["text"] for line in logs] == ["line of 500"]
    finally:
        if client is not None:
            client.stop_channels()
        server.stop()

    store = Store(db, recover=False)
    try:
        counts = dict(
            store.sql(
                "SELECT status, count(*) FROM tasks WHERE group_id = ? GROUP BY status", [group]
            ).fetchall()
        )
        assert counts == {"complete": ITEMS - 1, "cancelled": 1}
        results = store.sql(
            "SELECT count(*) FROM tasks WHERE group_id = ? AND status = 'complete' "
            "AND result = CAST(2 * CAST(args AS INTEGER) AS VARCHAR)",
            [group],
        ).fetchall()
        assert results == [(ITEMS - 1,)]
        history = store.sql(
            "SELECT count(*), count(DISTINCT task_id) FROM task_events WHERE task_id LIKE ? "
            "AND task_id <> ?",
            [group[:24] + "%", group],
        ).fetchall()
        assert history[0][1] == ITEMS  # every child's end, once (the slow one: its run too)
        assert history[0][0] <= ITEMS + 2
    finally:
        store.close()
