"""Drive a real ipykernel over ZMQ as a front end does, keeping every iopub message."""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
OUTPUT_TYPES = ("stream", "display_data", "execute_result", "error", "update_display_data")


@dataclass
class Execution:
    msg_id: str
    reply: dict[str, Any]
    seconds: float
    outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def shown(self) -> list[dict[str, Any]]:
        """The outputs the cell itself shows: not updates of an earlier display (a task's
        widget re-sent as its state changes), which a front end applies there."""
        return [msg for msg in self.outputs if msg["msg_type"] != "update_display_data"]

    @property
    def text(self) -> str:
        """Everything the cell showed, as text (streams, text/plain, tracebacks)."""
        parts = []
        for msg in self.shown:
            content = msg["content"]
            if msg["msg_type"] == "stream":
                parts.append(content["text"])
            elif msg["msg_type"] == "error":
                parts.append("\n".join(content["traceback"]))
            else:
                parts.append(str(content.get("data", {}).get("text/plain", "")))
        return "".join(parts)

    def widget_ids(self) -> list[str]:
        """The widgets the cell displayed (an update of a display shows no new one)."""
        return [
            msg["content"]["data"][WIDGET_MIME]["model_id"]
            for msg in self.shown
            if WIDGET_MIME in msg["content"].get("data", {})
        ]


class Kernel:
    """A started kernel and a client; ``messages`` holds all iopub traffic seen so far."""

    def __init__(self, km: KernelManager, kc: BlockingKernelClient) -> None:
        self.km = km
        self.kc = kc
        self.messages: list[dict[str, Any]] = []

    def _pump(self, timeout: float) -> dict[str, Any] | None:
        try:
            msg = self.kc.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            return None
        self.messages.append(msg)
        return msg

    def execute(
        self, code: str, *, cell_id: str | None = None, timeout: float = 60, check: bool = True
    ) -> Execution:
        """Run a cell and wait until the kernel is idle again (as JupyterLab sends it)."""
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            # A cell expected to fail must not make ipykernel abort the next request.
            "stop_on_error": check,
        }
        msg = self.kc.session.msg(
            "execute_request", content, metadata={"cellId": cell_id} if cell_id else {}
        )
        start = time.perf_counter()
        self.kc.shell_channel.send(msg)
        msg_id = msg["header"]["msg_id"]
        reply = self.kc.get_shell_msg(timeout=timeout)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.kc.get_shell_msg(timeout=timeout)
        seconds = time.perf_counter() - start
        deadline = time.monotonic() + timeout
        while True:
            got = self._pump(max(deadline - time.monotonic(), 0.01))
            if got is None:
                raise TimeoutError(f"no idle status for {code[:60]!r} within {timeout}s")
            if (
                got["msg_type"] == "status"
                and got["parent_header"].get("msg_id") == msg_id
                and got["content"]["execution_state"] == "idle"
            ):
                break
        result = Execution(msg_id, reply["content"], seconds, self.outputs_of(msg_id))
        if check and reply["content"]["status"] != "ok":
            raise AssertionError(f"cell failed: {result.text}")
        return result

    def outputs_of(self, msg_id: str) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages
            if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] in OUTPUT_TYPES
        ]

    def value(self, expression: str) -> Any:
        """Evaluate ``expression`` in the kernel and return it (via its repr)."""
        import ast

        out = self.execute(f"print(repr({expression}))").text.strip()
        return ast.literal_eval(out)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30) -> None:
        """Read iopub until ``predicate()`` holds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            self._pump(0.05)

    def comm_updates(self, comm_id: str) -> list[dict[str, Any]]:
        """The state dicts of ``update`` messages the kernel sent for one widget model."""
        return [
            m["content"]["data"]["state"]
            for m in self.messages
            if m["msg_type"] == "comm_msg"
            and m["content"]["comm_id"] == comm_id
            and m["content"]["data"].get("method") == "update"
        ]

    def click(self, button_id: str) -> None:
        """Send a button click as the ipywidgets front end does."""
        msg = self.kc.session.msg(
            "comm_msg",
            {"comm_id": button_id, "data": {"method": "custom", "content": {"event": "click"}}},
        )
        self.kc.shell_channel.send(msg)


@contextmanager
def running_kernel(db: Path, extra_env: dict[str, str] | None = None) -> Iterator[Kernel]:
    """A fresh ipykernel whose task store is ``db``; shut down afterwards."""
    env = dict(os.environ)
    env.update({"RAYTHA_NB_DB": str(db), "RAYTHA_NB_WORKERS": "4"}, **(extra_env or {}))
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=env)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        yield Kernel(km, kc)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
