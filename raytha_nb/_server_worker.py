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
import sys
from pathlib import Path

from . import _manager
from .processes import Shipped
from .protocol import ServerTask


def main(argv: list[str]) -> int:
    """Run the task the spec file names; 0 once its final state is stored."""
    spec_file = Path(argv[0])
    spec = ServerTask.from_json(json.loads(spec_file.read_text()))
    # The kernel's import path: modules beside the notebook, or added to sys.path in
    # it, import here as they did there.
    sys.path[:0] = [entry for entry in spec.sys_path if entry not in sys.path]
    for name, text in spec.sources.items():  # mtime None: kept, never checked on disk
        linecache.cache[name] = (len(text), None, text.splitlines(True), name)
    # Unpickled on the task's thread: a module missing here is the task's error.
    body = Shipped(spec_file.with_suffix(".pickle").read_bytes())
    manager = _manager.manager()
    manager.adopt(spec, body)
    manager.wait(spec.id)
    manager.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
