"""The kernel's side of server mode: a :class:`~raytha_nb.backend.TaskBackend` over HTTP.

A kernel started by a jupyter server with the raytha_nb extension finds the server's
kernel API in its environment (``RAYTHA_NB_URL``, ``RAYTHA_NB_TOKEN``,
``RAYTHA_NB_RESULTS``) or, failing that, in the runtime file
``raytha_nb-<server pid>.json`` its parent server wrote. Plain ``http.client`` with
one keep-alive connection per thread; no extra dependencies.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import duckdb

from ._sql import literal
from .model import ACTIVE, LogLine, StoreClosed, TaskRecord
from .store import TASK_COLUMNS, Batch, Store

_STATUS = TASK_COLUMNS.index("status")
_ACTIVE = {s.value for s in ACTIVE}
#: Page size used when a caller asks for every task (``limit=None``).
_PAGE = 1000


class ServerError(RuntimeError):
    """The raytha_nb server refused a request or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ServerAddress:
    """Where a kernel finds its server's kernel API."""

    url: str
    token: str
    results_dir: str | None = None


def discover() -> ServerAddress | None:
    """The server that started this kernel, from the environment or its runtime file."""
    url, token = os.environ.get("RAYTHA_NB_URL"), os.environ.get("RAYTHA_NB_TOKEN")
    if url and token:
        return ServerAddress(url, token, os.environ.get("RAYTHA_NB_RESULTS") or None)
    try:
        from jupyter_core.paths import jupyter_runtime_dir

        file = Path(jupyter_runtime_dir()) / f"raytha_nb-{os.getppid()}.json"
        data = json.loads(file.read_text())
        return ServerAddress(
            data["RAYTHA_NB_URL"], data["RAYTHA_NB_TOKEN"], data["RAYTHA_NB_RESULTS"]
        )
    except (OSError, ValueError, KeyError):
        return None


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class RemoteBackend:
    """Publishes this kernel's batches to the server and reads every kernel's tasks."""

    def __init__(self, address: ServerAddress, timeout: float = 10.0) -> None:
        parts = urlsplit(address.url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"RAYTHA_NB_URL must be an http:// URL, not {address.url!r}")
        self.address = address
        self._host = parts.hostname
        self._port = parts.port or 80
        self._prefix = parts.path.rstrip("/") + "/raytha-nb/kernel-api/"
        self._user_api = parts.path.rstrip("/") + "/raytha-nb/api/"
        self._timeout = timeout
        self._headers = {"Authorization": f"token {address.token}"}
        self._local = threading.local()
        self._results_dir = Path(address.results_dir) if address.results_dir else None
        self._session = uuid.uuid4().hex
        self._active: set[str] = set()
        from .manager import _kernel_identity

        self._kernel_id = _kernel_identity()[0]

    # -- plumbing ------------------------------------------------------------------
    def _request(
        self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None
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
            raise ServerError(f"the raytha_nb server answered {status}: {message}", status)
        return status, parsed

    def _task_path(self, job_id: str, *rest: str) -> str:
        return "/".join(("tasks", quote(job_id, safe=""), *rest))

    # -- TaskBackend -------------------------------------------------------------------
    @property
    def results_dir(self) -> Path:
        if self._results_dir is None:
            _, info = self._request("GET", "info")
            self._results_dir = Path(info["results_dir"])
        return self._results_dir

    def publish(self, batch: Batch) -> set[str]:
        for row in batch.tasks:
            if row[_STATUS] in _ACTIVE:
                self._active.add(row[0])
            else:
                self._active.discard(row[0])
        body = {
            "session": self._session,
            "kernel_id": self._kernel_id,
            "pid": os.getpid(),
            "active": sorted(self._active),
            "batch": batch.to_json(),
        }
        status, reply = self._request("POST", "publish", body=body)
        if status != 200 or not isinstance(reply, dict):
            raise ServerError(
                f"{self.address.url} has no raytha_nb kernel API (HTTP {status}): is the "
                "raytha_nb server extension enabled?",
                status,
            )
        return set(reply["cancel"])

    def get(self, job_id: str) -> TaskRecord | None:
        status, data = self._request("GET", self._task_path(job_id))
        return None if status == 404 else TaskRecord.from_json(data)

    def list_tasks(
        self,
        *,
        status: str | Sequence[str] | None = None,
        name: str | None = None,
        kernel_id: str | None = None,
        notebook: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[TaskRecord]:
        statuses = [status] if isinstance(status, str) else status
        query: dict[str, Any] = {
            "status": ",".join(statuses) if statuses else None,
            "name": name,
            "kernel_id": kernel_id,
            "notebook": notebook,
        }
        records: list[TaskRecord] = []
        next_offset: int | None = offset
        while next_offset is not None:
            want = _PAGE if limit is None else min(_PAGE, limit - len(records))
            if want <= 0:
                break
            _, page = self._request("GET", "tasks", {**query, "limit": want, "offset": next_offset})
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
            LogLine(line["task_id"], line["seq"], _time(line["ts"]), line["stream"], line["text"])
            for line in data["lines"]
        ]

    def history(self, job_id: str) -> list[dict[str, Any]]:
        status, data = self._request("GET", self._task_path(job_id, "history"))
        if status == 404:
            return []
        return [{**event, "ts": _time(event["ts"])} for event in data["events"]]

    def request_cancel(self, job_id: str) -> None:
        self._request("POST", self._task_path(job_id, "cancel"), body={})

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
