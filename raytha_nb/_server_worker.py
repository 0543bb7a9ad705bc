"""A server worker: the process the Jupyter server starts to run one
``executor="server"`` task (``python -m raytha_nb._server_worker <spec file>``).

It is a kernel-less publisher: the server's environment gives it the kernel API's
address and a secret made for its task, and it runs the task on a thread with the
whole task API, as a kernel would. Nothing ties it to the kernel that started the
task, so the task goes on through that kernel's restart or shutdown.
"""

from __future__ import annotations

import json
import linecache
import os
import sys
import time
from pathlib import Path

from . import _manager, _notebook_job, _retry
from ._client import RemoteBackend
from ._identity import discover, find_server
from .processes import Shipped
from .protocol import ServerTask

#: Seconds a worker whose task ended keeps offering its final state to a server that is
#: away (restarting: it reconnects, even on another port). Then it gives up, and the
#: server's reaper ends the silent task ``interrupted``.
UNDELIVERED = 600.0


def main(argv: list[str]) -> int:
    """Run the task the spec file names; 0 once its final state is stored. A spare
    (``--spare``) has done its imports and reads its task from stdin first: the spec
    file, the task's part of the environment, its directory."""
    if argv == ["--spare"]:
        if os.environ.pop(_notebook_job.PRELOAD_ENV, None):
            _notebook_job.preload()  # while no task waits: seconds of imports
        line = sys.stdin.readline()
        if not line:
            return 0  # the server stopped without a task for it
        task = json.loads(line)
        os.environ.update(task["env"])
        os.chdir(task["cwd"])
        argv = [task["spec"]]
    spec_file = Path(argv[0])
    data = json.loads(spec_file.read_text())
    spec = ServerTask.from_json(data)
    # The kernel's import path: modules beside the notebook, or added to sys.path in
    # it, import here as they did there.
    sys.path[:0] = [entry for entry in spec.sys_path if entry not in sys.path]
    for name, text in spec.sources.items():  # mtime None: kept, never checked on disk
        linecache.cache[name] = (len(text), None, text.splitlines(True), name)
    # Unpickled on the task's thread: a module missing here is the task's error.
    body = Shipped(spec_file.with_suffix(".pickle").read_bytes())
    address = discover()
    if address is None:
        print("raytha_nb server worker: no server address in the environment", file=sys.stderr)
        return 2
    store = str(data["store"])
    backend = RemoteBackend(address, relocate=lambda: _server_url(store))
    # Publishing every 0.1 s brings a cancel request here within that; the grace is the
    # server's, which kills this process if the task's thread does not stop.
    manager = _manager._default = _manager.TaskManager(
        backend=backend, flush_interval=0.1, cancel_grace=float(data["grace"])
    )
    live = manager.adopt(spec, body)
    ended: float | None = None
    while not live.wait_committed(1.0):
        if not live.status.finished:
            continue
        ended = ended or time.monotonic()
        if time.monotonic() - ended > UNDELIVERED:
            print(
                f"raytha_nb server worker: task {spec.id} ended but no server took its final "
                f"state for {UNDELIVERED:.0f} s; giving up",
                file=sys.stderr,
            )
            break
    manager.shutdown()
    _retry.flush_bodies()  # of tasks this one started: the exit below runs no atexit
    return 0


def _server_url(store: str) -> str | None:
    """The URL of the server now holding ``store`` (it may restart on another port)."""
    found = find_server(store)
    return None if found is None else found.url


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # Ends now, even if the task left threads behind (a notebook job's kernel client, a
    # non-daemon thread of the user's): its final state is delivered, nothing waits.
    os._exit(code)
