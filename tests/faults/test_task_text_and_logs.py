"""What a task says is kept: undecodable file names, a million lines printed as fast
as possible, lines printed after the task ended, and big results (embedded and under a
real server)."""

from __future__ import annotations

import ast
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import raytha_nb as rnb
from raytha_nb.model import clean_text, dumps

from .._server_helpers import JupyterServer, run


def test_clean_text_escapes_what_utf8_cannot_hold() -> None:
    assert clean_text("caf\udce9.csv") == "caf\\xe9.csv"  # a raw byte from os.listdir
    assert clean_text("half \ud800 pair") == "half \\ud800 pair"  # a lone high surrogate
    assert clean_text("café ✓") == "café ✓"
    text = dumps({"f": "caf\udce9"})  # args: still JSON, the byte as a JSON escape
    assert text.isascii() and json.loads(text) == {"f": "caf\udce9"}


def test_one_undecodable_name_blocks_nothing(mgr: rnb.TaskManager, tmp_path: Path) -> None:
    """A raw-bytes file name in a print, an info, an error and the args: every task is
    stored, with the bad byte escaped visibly."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ok.csv").write_text("x")
    with open(os.path.join(os.fsencode(tmp_path / "data"), b"caf\xe9.csv"), "w") as handle:
        handle.write("x")
    names = sorted(os.listdir(tmp_path / "data"))
    bad = next(n for n in names if not n.isascii())

    def lister(folder: str) -> list[str]:
        for name in sorted(os.listdir(folder)):
            print("found", name)
            rnb.progress(50, info=f"reading {name}")
        return [n.encode("utf-8", "surrogateescape").hex() for n in os.listdir(folder)]

    def failing(name: str) -> None:
        raise ValueError(f"cannot parse {name}")

    before = rnb.enqueue(lambda: 1, name="before")
    jobs = [
        rnb.enqueue(lister, {"folder": str(tmp_path / "data")}),
        rnb.enqueue(failing, {"name": "fine"}, name=f"parse {bad}"),
    ]
    after = rnb.enqueue(lambda: 2, name="after")
    for job in [before, *jobs, after]:
        rnb.wait(job, timeout=20)
    stored = mgr.backend.store  # type: ignore[attr-defined]
    rows = stored.sql("SELECT name, status FROM tasks ORDER BY created_at").fetchall()
    assert [status for _, status in rows] == ["complete", "complete", "error", "complete"]
    assert rows[2][0] == "parse caf\\xe9.csv"
    lines = [line.text for line in rnb.logs(jobs[0])]
    assert "found caf\\xe9.csv" in lines and "found ok.csv" in lines
    assert "reading" in (stored.get(jobs[0]).status_info or "")
    assert rnb.get_task(jobs[1]).error_message == "cannot parse fine"


def test_under_a_server_one_bad_name_does_not_silence_the_kernel(
    start_server: Callable[[float], JupyterServer], tmp_path: Path
) -> None:
    """Before: every later publish of the kernel failed with 400 and nothing was stored."""
    server = start_server(30)
    folder = tmp_path / "odd"
    folder.mkdir()
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.csv"), "w") as handle:
        handle.write("x")
    kernel_id, client = server.start_kernel()
    try:
        run(client, "import os\nimport raytha_nb as rnb")
        jobs = ast.literal_eval(
            run(
                client,
                "def shout(folder):\n"
                "    for name in os.listdir(folder):\n"
                "        print(name)\n"
                "        rnb.progress(10, info=name)\n"
                "    return os.listdir(folder)[0].encode('utf-8', 'surrogateescape').hex()\n"
                f"jobs = [rnb.enqueue(shout, {{'folder': {str(folder)!r}}}) for _ in range(3)]\n"
                "[rnb.wait(j, 20).status.value for j in jobs]\n"
                "jobs",
            )
        )
        for job in jobs:
            record = server.wait_for(job, {"complete"}, 20)
            assert record["status_info"] == "caf\\xe9.csv"
            lines = server.get(f"raytha-nb/api/tasks/{job}/logs")["lines"]
            assert [line["text"] for line in lines] == ["caf\\xe9.csv"]
        assert run(client, "rnb.result(jobs[0])") == repr(b"caf\xe9.csv".hex())
    finally:
        client.stop_channels()
        server.request("DELETE", f"api/kernels/{kernel_id}")


def test_a_million_lines_are_all_stored(mgr: rnb.TaskManager) -> None:
    """Before: at most 2,000 lines per task per flush were kept (14,000 of 1,000,000).
    Now a loud task waits for the store instead of losing lines."""
    count = 1_000_000

    def loud() -> int:
        for i in range(count):
            print(i)
        return count

    started = time.perf_counter()
    job = rnb.enqueue(loud)
    assert rnb.wait(job, timeout=240).status == "complete"
    elapsed = time.perf_counter() - started
    store = mgr.backend.store  # type: ignore[attr-defined]
    stored = store.sql(
        "SELECT count(*), count(DISTINCT seq), min(seq), max(seq), "
        "sum(CAST(text AS BIGINT)) FROM task_logs WHERE task_id = ?",
        [job],
    ).fetchone()
    assert stored == (count, count, 1, count, count * (count - 1) // 2), elapsed


def test_lines_printed_after_the_task_ended_are_kept(mgr: rnb.TaskManager) -> None:
    """Before: a bound thread that kept printing after its task returned lost 29 of 30."""
    go = threading.Event()
    done = threading.Event()

    def late(n: int) -> None:
        go.wait(10)
        for i in range(n):
            print(f"late {i}")
            time.sleep(0.01)
        done.set()

    def task() -> str:
        threading.Thread(target=rnb.bind(late), args=(30,), daemon=True).start()
        return "returned"

    job = rnb.enqueue(task)
    assert rnb.wait(job, timeout=10).status == "complete"
    go.set()
    assert done.wait(10)
    mgr.flush()
    deadline = time.monotonic() + 10
    while len(rnb.logs(job)) < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [line.text for line in rnb.logs(job)] == [f"late {i}" for i in range(30)]
    store = mgr.backend.store  # type: ignore[attr-defined]
    row = store.sql("SELECT count(*) FROM task_logs WHERE task_id = ?", [job]).fetchone()
    assert row == (30,)
    assert rnb.get_task(job).status == "complete"  # the late lines changed nothing else


def test_unfetched_results_are_bounded_by_bytes(db_path: Path) -> None:
    """Before: 32 returned values stayed in kernel memory whatever their size. Now at
    most result_cache_mb of them; an evicted one loads back from its stored file."""
    import numpy as np
    import pandas as pd

    manager = rnb.TaskManager(db_path, workers=2, flush_interval=0.05, result_cache_mb=20)
    try:
        frames = {
            i: manager.enqueue(lambda i=i: pd.DataFrame({"x": np.full(1_000_000, i)}), name=f"f{i}")
            for i in range(6)
        }  # six 8 MB frames
        for job in frames.values():
            manager.wait(job, timeout=60)
        held = [job for job in frames.values() if job in manager.values]
        assert len(held) == 2  # 16 MB of 20
        for i, job in frames.items():
            frame = manager.result(job)
            assert len(frame) == 1_000_000 and int(frame["x"].iloc[0]) == i
    finally:
        manager.shutdown()
