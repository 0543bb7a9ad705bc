"""A bad task store file, a never-checkpointed WAL and a full disk (issue 10, items 7-9).

Real DuckDB files written by real processes, damaged the way disks and people damage
them (cut short, bytes flipped, emptied, replaced by a folder, made read-only), real
``kill -9`` and a real file-size limit (``RLIMIT_FSIZE``, what ``prlimit --fsize``
sets) standing in for a full disk. Every write the store acknowledged must survive,
and every failure must say what is wrong and what to do.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest

from raytha_nb.errors import StoreDamaged, StoreUnusable
from raytha_nb.model import TaskQuery
from raytha_nb.protocol import Batch, ProgressRow, TaskRow
from raytha_nb.store import Store

ROOT = Path(__file__).resolve().parents[2]
#: DuckDB's file header: one main header and two database headers of 4 KiB each.
HEADER = 3 * 4096
NOBODY = 65534

#: Runs real tasks through raytha_nb (embedded mode) into the store argv[1], then exits
#: cleanly: DuckDB checkpoints at close, so the file holds everything and no WAL is left.
BUILD = """
import sys, raytha_nb as rnb
rnb.configure(sys.argv[1], workers=2, flush_interval=0.02)
def work(i):
    for step in range(4):
        rnb.progress(step * 25, info=f"step {step}")
        print(f"task {i} line {step} " + "x" * 80)
    return {"i": i, "pad": "y" * 200}
for job in [rnb.enqueue(work, {"i": i}, name=f"work-{i}") for i in range(60)]:
    rnb.wait(job, timeout=60)
"""

#: Shared by the subprocesses below: the lives of ``count`` tasks as a kernel's publisher
#: sends them (enqueued, processing, a progress update, complete with 3 log lines), in 4
#: batches, each yielded with the ids of its tasks.
TASK_BATCHES = """
import time, uuid
from raytha_nb.protocol import Batch, HistoryRow, LogRow, ProgressRow, TaskRow

def task_batches(first, count=1, marker="line", text=120):
    now = time.time()
    ids = [str(uuid.uuid4()) for _ in range(count)]
    rows = [TaskRow(job, f"task-{first + n}", "work", "{}", created_at=now,
                    kernel_id="kernel-1", pid=1) for n, job in enumerate(ids)]
    history = lambda status: [HistoryRow(job, now, status) for job in ids]
    yield ids, Batch(tasks=rows, history=history("enqueued"))
    rows = [row._replace(status="processing", started_at=now) for row in rows]
    yield ids, Batch(tasks=rows, history=history("processing"))
    yield ids, Batch(progress=[ProgressRow(job, 1, "half way", 50.0, now) for job in ids])
    rows = [row._replace(status="complete", percent_complete=100.0, completed_at=now,
                         result='"' + "r" * 300 + '"', result_kind="json") for row in rows]
    logs = [LogRow(job, s, now, "stdout", f"{marker}-{first + n:04d}-{s} " + "z" * text)
            for n, job in enumerate(ids) for s in range(1, 4)]
    yield ids, Batch(tasks=rows, history=history("complete"), logs=logs)
"""


def python(
    code: str, *args: str, user: int | None = None, **kwargs: object
) -> subprocess.Popen[str]:
    """A real Python process on this checkout (as ``user``, when given and we are root)."""
    prefix: list[str] = []
    if user is not None and os.geteuid() == 0:
        prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
    return subprocess.Popen(
        [*prefix, sys.executable, "-c", textwrap.dedent(code), *args],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[arg-type]
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    return out


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real store written by a real raytha_nb process: 60 tasks with logs and history."""
    path = tmp_path_factory.mktemp("pristine") / "tasks.duckdb"
    finish(python(BUILD, str(path)))
    assert path.exists() and not Path(f"{path}.wal").exists()
    return path


@pytest.fixture
def store_copy(pristine: Path, tmp_path: Path) -> Path:
    path = tmp_path / "tasks.duckdb"
    shutil.copy(pristine, path)
    return path


def wal_of(path: Path) -> Path:
    return Path(f"{path}.wal")


def flip_task_data(path: Path, table: str = "task_logs") -> None:
    """Overwrite bytes inside the block holding ``table``'s data nearest the middle of the
    file (found in DuckDB's own storage map), as a bad sector or a stray write would."""
    con = duckdb.connect(str(path), read_only=True)
    block_size = con.execute("PRAGMA database_size").fetchone()[2]  # type: ignore[index]
    segments = con.execute(
        f"SELECT block_id, block_offset FROM pragma_storage_info('{table}') WHERE block_id >= 0"
    ).fetchall()
    con.close()
    middle = path.stat().st_size // 2
    block, offset = min(segments, key=lambda s: abs(HEADER + s[0] * block_size - middle))
    with path.open("r+b") as f:
        f.seek(HEADER + block * block_size + 8 + offset + 64)  # past the block checksum
        f.write(b"\xa5" * 32)


def leave_wal(path: Path, tasks: int = 30) -> None:
    """Commit more tasks and die by ``kill -9``: they are in the WAL only."""
    code = TASK_BATCHES + textwrap.dedent(
        """
        import os, sys
        from raytha_nb.store import Store
        store = Store(sys.argv[1])
        for i in range(0, int(sys.argv[2]), 5):
            for _ids, batch in task_batches(i, 5, marker="WALMARK"):
                store.apply(batch)
        os.kill(os.getpid(), 9)
        """
    )
    proc = python(code, str(path), str(tasks))
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert wal_of(path).stat().st_size > 10_000


def flip_in_wal(path: Path) -> None:
    """Change one byte inside a log line recorded in the WAL (a WAL entry's payload, so
    its checksum no longer matches)."""
    data = bytearray(wal_of(path).read_bytes())
    at = data.find(b"WALMARK-0015")
    assert at > 0, "the log line is not in the WAL as text"
    data[at + 3] ^= 0xFF
    wal_of(path).write_bytes(bytes(data))


# -- item 7: a damaged or unusable file stops with a message saying what to do ----------


def _truncated(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _zero_bytes(path: Path) -> None:
    os.truncate(path, 0)


def _text_file(path: Path) -> None:
    path.write_text("name,value\nthis,is a csv file saved under the wrong name\n")


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "notes.txt").write_text("a folder where the store should be")


def _corrupt_wal(path: Path) -> None:
    leave_wal(path)
    flip_in_wal(path)


CASES: dict[str, tuple[Callable[[Path], None], type[Exception], tuple[str, ...]]] = {
    "truncated": (_truncated, StoreDamaged, ("cut short", "mv ", ".damaged", "fresh")),
    "zero-bytes": (_zero_bytes, StoreDamaged, ("empty", "mv ", ".damaged")),
    "text-file": (_text_file, StoreDamaged, ("not a DuckDB database", "name,value", "mv ")),
    "directory": (_directory, StoreUnusable, ("is a directory", "RAYTHA_NB_DB")),
    "checksum": (flip_task_data, StoreDamaged, ("checksum", "mv ", ".damaged")),
    "corrupt-wal": (
        _corrupt_wal,
        StoreDamaged,
        ("write-ahead log", "tasks.duckdb.wal.damaged", "last checkpoint"),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_store_file_is_refused_with_what_to_do(store_copy: Path, case: str) -> None:
    damage, expected, phrases = CASES[case]
    damage(store_copy)
    with pytest.raises(expected) as caught:
        Store(store_copy).close()
    message = str(caught.value)
    assert str(store_copy) in message
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} missing from: {message}"
    assert "cannot rollback" not in message
    if expected is StoreDamaged and case != "corrupt-wal":
        # The fix it names works: moved aside, the same path opens as a fresh store.
        shutil.move(store_copy, f"{store_copy}.damaged")
        if wal_of(store_copy).exists():
            shutil.move(wal_of(store_copy), f"{wal_of(store_copy)}.damaged")
        Store(store_copy).close()
    if case == "corrupt-wal":
        # Moving the log aside gives the store as of its last checkpoint: all 60 tasks.
        shutil.move(wal_of(store_copy), f"{wal_of(store_copy)}.damaged")
        store = Store(store_copy, recover=False)
        assert store.count_tasks(TaskQuery.of(None, None, None)) == 60
        store.close()


@pytest.fixture
def read_only_folder(pristine: Path) -> Iterator[Path]:
    """A store in a folder its user may not write (files intact and writable)."""
    folder = Path(tempfile.mkdtemp(prefix="rnb-ro-"))
    path = folder / "tasks.duckdb"
    shutil.copy(pristine, path)
    if os.geteuid() == 0:  # root writes anywhere: the store is opened as nobody instead
        os.chown(folder, NOBODY, NOBODY)
        os.chown(path, NOBODY, NOBODY)
    folder.chmod(0o555)
    yield path
    folder.chmod(0o755)
    shutil.rmtree(folder)


def test_a_store_in_a_read_only_folder_says_so_at_open(read_only_folder: Path) -> None:
    code = """
        import json, sys
        from raytha_nb.store import Store
        try:
            Store(sys.argv[1]).close()
            print(json.dumps(["opened", ""]))
        except Exception as exc:
            print(json.dumps([type(exc).__name__, str(exc)]))
    """
    kind, message = json.loads(finish(python(code, str(read_only_folder), user=NOBODY)))
    assert kind == "StoreUnusable", message
    folder = str(read_only_folder.parent)
    assert folder in message and "read-only" in message and "chmod u+w" in message


def test_damage_found_by_a_write_stops_the_store(
    store_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store too big to read whole at open (as if: the limit set to 0) whose damage
    only a write reaches: that write says the store is damaged, and so does every
    later one (nothing more is written into a damaged file)."""
    con = duckdb.connect(str(store_copy), read_only=True)
    ids = [row[0] for row in con.execute("SELECT id FROM tasks LIMIT 2").fetchall()]
    con.close()
    flip_task_data(store_copy, "tasks")
    monkeypatch.setattr(Store, "VERIFY_MAX_BYTES", 0)
    store = Store(store_copy, recover=False)
    try:
        with pytest.raises(StoreDamaged) as first:
            store.apply(Batch(progress=[ProgressRow(ids[0], 1, "x", 1.0, time.time())]))
        message = str(first.value)
        assert str(store_copy) in message and "checksum" in message and "mv " in message
        with pytest.raises(StoreDamaged):  # even a write that would not meet the damage
            store.apply(Batch(tasks=[TaskRow(str(uuid.uuid4()), "new", "t", created_at=1.0)]))
    finally:
        store.close()


#: A kernel whose disk fills up (a file-size limit just above the store's files, SIGXFSZ
#: ignored so a write fails with EFBIG instead of killing the process) while a task
#: runs: argv[2] says what to report, the widget's warning or what wait() raises.
FULL_KERNEL = """
import json, os, resource, signal, sys, time
import raytha_nb as rnb
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
db, wal = sys.argv[1], sys.argv[1] + ".wal"
mgr = rnb.configure(db, workers=1, flush_interval=0.02)
rnb.wait(rnb.enqueue(lambda: 0), timeout=30)
room = max(os.path.getsize(db), os.path.getsize(wal) if os.path.exists(wal) else 0) + 2048
resource.setrlimit(resource.RLIMIT_FSIZE, (room, resource.RLIM_INFINITY))
def work():
    for i in range(100):
        print(f"line {i} " + "v" * 200)
        time.sleep(0.01)
    return "done"
job = rnb.enqueue(work)
deadline = time.monotonic() + 20
while mgr.publisher.last_error is None and time.monotonic() < deadline:
    time.sleep(0.02)
if sys.argv[2] == "wait":
    try:
        rnb.wait(job, timeout=3)
        out = ["returned", ""]
    except BaseException as exc:
        out = [type(exc).__name__, str(exc)]
else:
    from raytha_nb.widgets import TaskProgress
    widget = TaskProgress(job)
    widget.refresh()
    shown = [widget._warning.value, widget._warning.layout.display]
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
    rnb.wait(job, timeout=30)  # room again: stored, and the warning goes
    widget.refresh()
    out = [*shown, widget._warning.layout.display]
print(json.dumps(out), flush=True)
os._exit(0)  # skip the final flush, which may wait for a disk that stays full
"""


def test_the_widget_says_when_task_state_is_not_being_stored(tmp_path: Path) -> None:
    path = tmp_path / "tasks.duckdb"
    warning, display, after = json.loads(finish(python(FULL_KERNEL, str(path), "widget")))
    assert display == "block", warning
    assert "not stored yet" in warning and "StoreWriteError" in warning, warning
    assert "File too large" in warning and "<br" not in warning  # one line, the cause
    assert after == "none"


def test_wait_raises_the_store_error_not_a_timeout(tmp_path: Path) -> None:
    path = tmp_path / "tasks.duckdb"
    kind, message = json.loads(finish(python(FULL_KERNEL, str(path), "wait")))
    assert kind == "StoreWriteError", message
    assert str(path) in message and "File too large" in message


# -- item 8: the WAL is checkpointed, so a damaged WAL costs only the last moments -------

#: The server's path: kernels' batches through TaskService, the reaper ticking.
SERVER = (
    TASK_BATCHES
    + """
import asyncio, json, logging, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from raytha_nb.protocol import Publish
from raytha_nb.server.events import EventHub
from raytha_nb.server.reaper import Reaper
from raytha_nb.server.service import TaskService
from raytha_nb.store import Store

async def main():
    store = Store(sys.argv[1], recover=False)
    service = TaskService(store, EventHub(asyncio.get_running_loop()), heartbeat_timeout=60)
    reaper = Reaper(service, ThreadPoolExecutor(2), 0.1, logging.getLogger("t"),
                    checkpoint_idle=0.5)
    reaper.start(None)
    jobs = []
    for i in range(0, 100, 10):
        for ids, batch in task_batches(i, 10):
            service.publish(Publish("session-1", batch, "kernel-1", 1, tuple(ids)))
        jobs += ids
        await asyncio.sleep(0.01)
    await asyncio.sleep(2.0)  # idle for well over checkpoint_idle
    print(json.dumps(jobs), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""
)


def test_the_server_checkpoints_when_idle_so_a_damaged_wal_loses_nothing_older(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tasks.duckdb"
    proc = python(SERVER, str(path))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert line, err
    assert_all_back_after_wal_damage(path, json.loads(line), logs=3)


def assert_all_back_after_wal_damage(path: Path, jobs: list[str], logs: int) -> None:
    """Every task complete, with its log lines, after the WAL is cut one byte short, and
    even with no WAL at all (how much of a damaged WAL DuckDB replays varies)."""
    without = path.with_name("without-wal.duckdb")
    shutil.copy(path, without)
    if wal_of(path).exists():
        os.truncate(wal_of(path), max(0, wal_of(path).stat().st_size - 1))
    for copy in (path, without):
        store = Store(copy, recover=False)
        try:
            stored = {r.id: r for r in store.get_many(jobs)}
            assert len(stored) == len(jobs), f"{copy.name}: {len(stored)} of {len(jobs)} back"
            assert all(r.status.value == "complete" for r in stored.values())
            assert all(len(store.logs(job)) == logs for job in jobs)
        finally:
            store.close()


#: Writes without pause (never idle) with a small WAL threshold; reports, after each
#: task, whether the WAL just shrank (a checkpoint), then dies by kill -9.
BUSY_WRITER = (
    TASK_BATCHES
    + """
import json, os, sys
from pathlib import Path
from raytha_nb.store import Store
Store.WAL_CHECKPOINT_BYTES = 64 * 1024
store = Store(sys.argv[1])
wal = Path(sys.argv[1] + ".wal")
jobs, checkpointed, before = [], 0, 0
for i in range(0, 150, 5):
    for ids, batch in task_batches(i, 5, text=400):
        store.apply(batch)
    jobs += ids
    size = wal.stat().st_size if wal.exists() else 0
    if size < before:
        checkpointed = len(jobs)
    before = size
print(json.dumps([jobs, checkpointed]), flush=True)
os.kill(os.getpid(), 9)
"""
)


def test_a_busy_store_checkpoints_when_the_wal_grows(tmp_path: Path) -> None:
    path = tmp_path / "tasks.duckdb"
    proc = python(BUSY_WRITER, str(path))
    out, err = proc.communicate(timeout=60)
    assert out, err
    jobs, checkpointed = json.loads(out)
    assert checkpointed >= 100, f"last checkpoint after task {checkpointed} of 150"
    # Lose the whole WAL: what was checkpointed is still there.
    if wal_of(path).exists():
        wal_of(path).unlink()
    store = Store(path, recover=False)
    try:
        assert len(store.get_many(jobs[:checkpointed])) == checkpointed
    finally:
        store.close()


def test_an_idle_kernel_checkpoints_its_embedded_store(tmp_path: Path) -> None:
    path = tmp_path / "tasks.duckdb"
    code = """
        import json, os, sys, time
        import raytha_nb as rnb
        from raytha_nb.store import Store
        Store.IDLE_CHECKPOINT_SECONDS = 0.5
        rnb.configure(sys.argv[1], workers=2, flush_interval=0.02)
        jobs = [rnb.enqueue(lambda i: i, {"i": i}) for i in range(100)]
        for job in jobs:
            rnb.wait(job, timeout=30)
        time.sleep(2.5)
        print(json.dumps(jobs), flush=True)
        os.kill(os.getpid(), 9)
    """
    proc = python(code, str(path))
    out, err = proc.communicate(timeout=60)
    assert out, err
    assert_all_back_after_wal_damage(path, json.loads(out), logs=0)


# -- item 9: a full disk names its cause, loses nothing acknowledged, and heals ---------

#: Writes tasks, then runs out of room (a file-size limit just above the files' sizes,
#: SIGXFSZ ignored so a write fails with EFBIG instead of killing the process), writes
#: until the store refuses, gets its room back and writes on; then dies by kill -9.
#: ``wal``: the WAL hits the limit. ``checkpoint``: the main file is at the limit and
#: the WAL passes the checkpoint size first, so a checkpoint fails (DuckDB then
#: invalidates the database: only a reopen brings it back), then the WAL hits it too.
FULL_DISK = (
    TASK_BATCHES
    + """
import json, os, resource, signal, sys
from pathlib import Path
from raytha_nb.errors import StoreWriteError
from raytha_nb.store import Store
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
path, mode = sys.argv[1], sys.argv[2]
store = Store(path)
acked, errors = [], []

def write(i):
    for ids, batch in task_batches(i, text=30_000):
        store.apply(batch)  # raises before the task counts as acknowledged
    acked.extend(ids)

for i in range(10):
    write(i)
store.sql("CHECKPOINT")  # the main file at its full size, the WAL empty
if mode == "checkpoint":
    Store.WAL_CHECKPOINT_BYTES = 64 * 1024
room = os.path.getsize(path) + (0 if mode == "checkpoint" else 32 * 1024)
resource.setrlimit(resource.RLIMIT_FSIZE, (room, resource.RLIM_INFINITY))
i = 10
while len(errors) < 3 and i < 5000:
    try:
        write(i)
    except StoreWriteError as exc:
        errors.append(str(exc))
    i += 1
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
for j in range(10):
    write(10_000 + j)  # room again: writes go on by themselves
print(json.dumps({"acked": acked, "errors": errors, "tried": i}), flush=True)
os.kill(os.getpid(), 9)
"""
)


@pytest.mark.parametrize("mode", ["wal", "checkpoint"])
def test_a_full_disk_names_its_cause_and_loses_nothing_acknowledged(
    tmp_path: Path, mode: str
) -> None:
    path = tmp_path / "tasks.duckdb"
    proc = python(FULL_DISK, str(path), mode)
    out, err = proc.communicate(timeout=120)
    assert out, err
    report = json.loads(out)
    assert len(report["errors"]) == 3, report["errors"]
    if mode == "checkpoint":
        assert "could not checkpoint" in err and "reopened the task store" in err, err
    for message in report["errors"]:
        assert "File too large" in message, message
        assert "cannot rollback" not in message
        assert "free disk space" in message.lower() and "nothing" in message.lower()
    acked = report["acked"]
    assert len(acked) >= 20  # 10 before the limit, 10 after, and those in between
    store = Store(path, recover=False)
    try:
        stored = {r.id: r for r in store.get_many(acked)}
        missing = [job for job in acked if job not in stored]
        assert not missing, f"{len(missing)} acknowledged tasks lost"
        assert all(r.status.value == "complete" for r in stored.values())
        assert all(len(store.logs(job)) == 3 for job in acked)
    finally:
        store.close()


def test_a_kernel_on_a_full_disk_resumes_publishing_and_loses_nothing(tmp_path: Path) -> None:
    """The whole kernel: tasks run on while the disk is full, the publisher reports the
    real cause, and once there is room again every task is stored with every log line."""
    path = tmp_path / "tasks.duckdb"
    code = """
        import json, os, resource, signal, sys, time
        import raytha_nb as rnb
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        mgr = rnb.configure(sys.argv[1], workers=4, flush_interval=0.02)
        rnb.wait(rnb.enqueue(lambda: 0), timeout=30)
        room = os.path.getsize(sys.argv[1]) + 64 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (room, resource.RLIM_INFINITY))
        def work(i):
            for s in range(20):
                print(f"task {i} line {s} " + "w" * 200)
                rnb.progress(s * 5)
                time.sleep(0.005)
            return i
        jobs = [rnb.enqueue(work, {"i": i}) for i in range(40)]
        deadline = time.monotonic() + 30
        while mgr.publisher.last_error is None and time.monotonic() < deadline:
            time.sleep(0.01)
        error = mgr.publisher.last_error
        seen = f"{type(error).__name__}: {error}"
        time.sleep(0.5)
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
        for job in jobs:
            rnb.wait(job, timeout=30)
        print(json.dumps([jobs, seen]), flush=True)
        os.kill(os.getpid(), 9)
    """
    proc = python(code, str(path))
    out, err = proc.communicate(timeout=120)
    assert out, err
    jobs, seen = json.loads(out)
    assert seen.startswith("StoreWriteError") and "File too large" in seen, seen
    assert "cannot rollback" not in seen
    store = Store(path, recover=False)
    try:
        stored = store.get_many(jobs)
        assert len(stored) == 40 and all(r.status.value == "complete" for r in stored)
        assert all([line.seq for line in store.logs(job)] == list(range(1, 21)) for job in jobs)
    finally:
        store.close()
