"""The kernel's side of server mode: a :class:`~raytha_nb.backend.TaskBackend` over HTTP.

A kernel started by a jupyter server with the raytha_nb extension finds the server's
kernel API through :func:`raytha_nb._identity.discover`. Plain ``http.client`` with
one keep-alive connection per thread; no extra dependencies.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import duckdb

from ._identity import ENV_WORKER, ServerAddress, kernel_identity
from ._sql import literal
from .backend import TaskBackend
from .errors import ServerError, StoreClosed, StoreWriteError
from .model import LogLine, TaskQuery, TaskRecord, parse_iso
from .protocol import Batch, Publish, ServerTask
from .store import Store

#: Page size used when a caller asks for every task (``limit=None``).
_PAGE = 1000


class RemoteBackend(TaskBackend):
    """Publishes this kernel's batches to the server and reads every kernel's tasks."""

    def __init__(
        self,
        address: ServerAddress,
        timeout: float = 10.0,
        relocate: Callable[[], str | None] | None = None,
    ) -> None:
        self._timeout = timeout
        self._local = threading.local()
        #: Where the server is now, if it may have moved (a server worker looks the
        #: restarted server up by its store): asked when the server cannot be reached.
        self._relocate = relocate
        self._point_at(address)
        self._headers = {"Authorization": f"token {address.token}"}
        self._results_dir = Path(address.results_dir) if address.results_dir else None
        self._session = uuid.uuid4().hex
        self._kernel_id = kernel_identity()[0]
        # Who is asking, for the server's ownership rules (a kernel deletes only its own).
        self._headers["X-Raytha-Nb-Pid"] = str(os.getpid())
        if self._kernel_id:
            self._headers["X-Raytha-Nb-Kernel"] = self._kernel_id
        worker = os.environ.get(ENV_WORKER)
        if worker:  # a server worker: its secret is made for this task
            self._headers["X-Raytha-Nb-Worker"] = worker

    def _point_at(self, address: ServerAddress) -> None:
        parts = urlsplit(address.url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"RAYTHA_NB_URL must be an http:// URL, not {address.url!r}")
        self.address = address
        self._host = parts.hostname
        self._port = parts.port or 80
        self._prefix = parts.path.rstrip("/") + "/raytha-nb/kernel-api/"
        self._user_api = parts.path.rstrip("/") + "/raytha-nb/api/"

    # -- plumbing ------------------------------------------------------------------
    def _request(
        self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None
    ) -> tuple[int, Any]:
        try:
            return self._send(method, path, query, body)
        except ServerError as exc:
            if exc.status is not None or self._relocate is None:
                raise
            url = self._relocate()
            if url is None or url == self.address.url:
                raise
            self._point_at(replace(self.address, url=url))
            self._local = threading.local()  # connections to the old address
            return self._send(method, path, query, body)

    def _send(
        self, method: str, path: str, query: dict[str, Any] | None, body: Any
    ) -> tuple[int, Any]:
        url = self._prefix + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None}, doseq=True)
        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = dict(self._headers)
        if payload is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):  # a kept-alive connection the server closed: retry once
            con = getattr(self._local, "con", None)
            if con is None:
                con = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
                self._local.con = con
            try:
                con.request(method, url, body=payload, headers=headers)
                response = con.getresponse()
                data = response.read()
                status = response.status
                break
            except (OSError, http.client.HTTPException) as exc:
                con.close()
                self._local.con = None
                if attempt == 2:
                    raise ServerError(
                        f"cannot reach the raytha_nb server at {self.address.url}: {exc}"
                    ) from exc
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = None
        if status == 403:
            said = parsed.get("message", "") if isinstance(parsed, dict) else ""
            if "kernel secret" not in said:  # refused for another reason: say which
                raise ServerError(f"the raytha_nb server refused: {said}", status)
            raise ServerError(
                "the raytha_nb server refused this kernel's secret (RAYTHA_NB_TOKEN); was the "
                "server restarted with another secret file? Restart the kernel.",
                status,
            )
        if status >= 500 or status in (400, 409):
            message = (
                parsed.get("message")
                if isinstance(parsed, dict)
                else data[:200].decode(errors="replace")
            )
            if status == 503:
                raise StoreClosed(f"the raytha_nb server is not serving its store: {message}")
            if status == 507:  # the server's disk refused the write; it says why
                raise StoreWriteError(
                    f"of the server at {self.address.url}",
                    str(message).rstrip("."),
                    "This kernel keeps its tasks' state and sends it again once it can.",
                )
            raise ServerError(f"the raytha_nb server answered {status}: {message}", status)
        return status, parsed

    def ping(self) -> bool:
        """Whether the server answers its kernel API and takes this secret (a runtime
        file can outlive its server when the PID was reused)."""
        try:
            status, _ = self._request("GET", "info")
        except ServerError:
            return False
        return status == 200

    def _task_path(self, job_id: str, *rest: str) -> str:
        return "/".join(("tasks", quote(job_id, safe=""), *rest))

    # -- TaskBackend -------------------------------------------------------------------
    @property
    def results_dir(self) -> Path:
        if self._results_dir is None:
            _, info = self._request("GET", "info")
            self._results_dir = Path(info["results_dir"])
        return self._results_dir

    def publish(self, batch: Batch, active: list[str]) -> dict[str, bool]:
        message = Publish(self._session, batch, self._kernel_id, os.getpid(), tuple(active))
        status, reply = self._request("POST", "publish", body=message.to_json())
        if status != 200 or not isinstance(reply, dict):
            raise ServerError(
                f"{self.address.url} has no raytha_nb kernel API (HTTP {status}): is the "
                "raytha_nb server extension enabled?",
                status,
            )
        forced = set(reply.get("force", ()))  # an older server sends none
        return {job_id: job_id in forced for job_id in reply["cancel"]}

    def get(self, job_id: str) -> TaskRecord | None:
        status, data = self._request("GET", self._task_path(job_id))
        return None if status == 404 else TaskRecord.from_json(data)

    def list_tasks(self, query: TaskQuery) -> list[TaskRecord]:
        records: list[TaskRecord] = []
        next_offset: int | None = query.offset
        while next_offset is not None:
            want = _PAGE if query.limit is None else min(_PAGE, query.limit - len(records))
            if want <= 0:
                break
            params = query.page(want, next_offset).params()
            _, page = self._request("GET", "tasks", params)
            records.extend(TaskRecord.from_json(t) for t in page["tasks"])
            next_offset = page["next_offset"]
        return records

    def logs(self, job_id: str, since: int = 0, limit: int = 10_000) -> list[LogLine]:
        status, data = self._request(
            "GET", self._task_path(job_id, "logs"), {"since": since, "limit": limit}
        )
        if status == 404:
            return []
        return [
            LogLine(
                line["task_id"], line["seq"], parse_iso(line["ts"]), line["stream"], line["text"]
            )
            for line in data["lines"]
        ]

    def history(self, job_id: str) -> list[dict[str, Any]]:
        status, data = self._request("GET", self._task_path(job_id, "history"))
        if status == 404:
            return []
        return [{**event, "ts": parse_iso(event["ts"])} for event in data["events"]]

    def request_cancel(self, job_id: str, force: bool = False) -> None:
        self._request("POST", self._task_path(job_id, "cancel"), body={"force": force})

    def run_on_server(self, spec: ServerTask, payload: bytes) -> None:
        """Hand a task to the server, which runs it in a worker process of its own."""
        body = {"task": spec.to_json(), "payload": base64.b64encode(payload).decode()}
        status, _ = self._request("POST", "server-tasks", body=body)
        if status == 404:
            raise ServerError(
                f"the raytha_nb server at {self.address.url} cannot run executor='server' "
                "tasks: upgrade raytha_nb on the server to the kernel's version",
                status,
            )

    def schedules(self, method: str, path: str = "", body: Any = None) -> tuple[int, Any]:
        """A call to the kernel API's ``schedules`` routes (``rnb.schedule`` & co.)."""
        return self._request(method, "schedules" + (f"/{path}" if path else ""), body=body)

    def delete(self, job_id: str) -> bool:
        status, _ = self._request("DELETE", self._task_path(job_id))
        return status != 404

    def result_url(self, job_id: str) -> str:
        """Where a browser on this server downloads the task's result file (a path on the
        page's own host, so it works behind proxies; Jupyter's login cookie opens it)."""
        return self._user_api + self._task_path(job_id, "result")

    def connection(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB holding a snapshot of the server store's tables (this
        process cannot open the file the server holds)."""
        status, reply = self._request("POST", "snapshot", body={})
        if status != 200 or not isinstance(reply, dict):
            raise ServerError(
                f"{self.address.url} cannot snapshot its task store (HTTP {status}): "
                "upgrade raytha_nb on the server to the kernel's version",
                status,
            )
        folder = Path(reply["dir"])
        con = duckdb.connect()
        try:
            for table in Store.TABLES:
                path = literal(folder / f"{table}.parquet")
                con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_parquet({path})")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return con

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
