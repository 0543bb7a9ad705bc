"""A foreground call that holds the GIL longer than the heartbeat timeout (ordinary in
data work: one long C call) silences the kernel's publisher. The kernel is busy, not
dead: its background task must end as it really ends, with one final state on both
sides, never ``interrupted`` then ``cancelled``."""

from __future__ import annotations

import ast
import time
from collections.abc import Callable

from .._server_helpers import JupyterServer, run

HEARTBEAT_TIMEOUT = 2.0


def test_a_gil_holding_foreground_call_does_not_kill_background_tasks(
    start_server: Callable[[float], JupyterServer],
) -> None:
    server = start_server(HEARTBEAT_TIMEOUT)
    kernel_id, client = server.start_kernel()
    try:
        run(client, "import time\nimport raytha_nb as rnb")
        # Size one GIL-holding C call (builtin sum over a range runs no bytecode, so no
        # other thread of the kernel runs meanwhile) to last well past the timeout.
        per_item = ast.literal_eval(
            run(
                client,
                "t = time.perf_counter(); sum(range(3 * 10**7)); "
                "(time.perf_counter() - t) / (3 * 10**7)",
            )
        )
        n = int((HEARTBEAT_TIMEOUT * 3.5) / per_item)  # margin: a loaded machine varies
        job = ast.literal_eval(
            run(
                client,
                "def work():\n"
                "    for i in range(40):\n"
                "        rnb.progress(i * 2.5)\n"
                "        time.sleep(0.05)\n"
                "    return 'done'\n"
                "job = rnb.enqueue(work)\n"
                "job",
            )
        )
        server.wait_for(job, {"processing"}, 30)
        started = time.monotonic()
        run(client, f"_ = sum(range({n}))", timeout=120)
        held = time.monotonic() - started
        # Past the timeout and a reap (every 0.25 s): the old server reaped by then.
        assert held > HEARTBEAT_TIMEOUT + 0.5, f"the call held the GIL only {held:.1f} s"

        final = server.wait_for(job, {"complete", "error", "cancelled", "interrupted"}, 30)
        assert final["status"] == "complete", final
        assert run(client, "rnb.wait(job, 30).status.value") == "'complete'"
        assert run(client, "rnb.result(job)") == "'done'"
        history = server.get(f"raytha-nb/api/tasks/{job}/history")["events"]
        assert "interrupted" not in [e["status"] for e in history], history
    finally:
        client.stop_channels()
        server.request("DELETE", f"api/kernels/{kernel_id}")
