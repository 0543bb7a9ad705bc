"""The kernel API against its OpenAPI document (docs/kernel-api.yaml), fuzzed on a real
server: no 5xx for any request, and whatever arrived, the user API and the store stay
healthy. Before: four bad publishes were answered 400 yet stored, and from then on
``GET tasks`` answered 500 for everyone."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from raytha_nb.model import TaskStatus

from .._server_helpers import ROOT, JupyterServer, live_task, publish_body

SPEC = ROOT / "docs" / "kernel-api.yaml"
schema = schemathesis.openapi.from_path(str(SPEC))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    home = tmp_path_factory.mktemp("kernel-fuzz")
    srv = JupyterServer(home, home / "tasks.duckdb", heartbeat_timeout=60).start()
    yield srv
    srv.stop()


def secret(server: JupyterServer) -> str:
    return (server.db.parent / f".{server.db.stem}.kernel-secret").read_text().strip()


def kernel_call(server: JupyterServer, method: str, path: str, body: str) -> requests.Response:
    return requests.request(
        method,
        f"{server.url}raytha-nb/kernel-api/{path}",
        data=body.encode("utf-8", "surrogatepass"),
        headers={"Authorization": f"token {secret(server)}", "Content-Type": "application/json"},
        timeout=30,
    )


def test_the_document_is_valid_openapi() -> None:
    schema.validate()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_fuzz_no_server_errors(case: Any, server: JupyterServer) -> None:
    case.call_and_validate(
        base_url=f"{server.url}raytha-nb/kernel-api",
        headers={"Authorization": f"token {secret(server)}"},
        # No 5xx, and every answer as documented. Not checked: whether the server
        # refuses what the document would not allow (unknown query parameters are
        # ignored, as by every Jupyter API) or accepts what it allows (the document
        # gives rows' shape; each column's type is the protocol's to check).
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )


#: Values a buggy or hostile kernel might put anywhere in a row.
ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([-1e12, 1e13, 253_402_300_800.0, 1e308, 0.5, 101.0, "NaN"]),
    st.text(max_size=20),
    st.sampled_from(["{not json", "\udce9", "running", "", "x" * 5000, "[]", "null"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@given(section=st.sampled_from(["tasks", "history", "logs"]), seed=st.integers(0, 10**6), value=ODD)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_one_odd_value_anywhere_is_a_400_or_stored_sanely(
    server: JupyterServer, section: str, seed: int, value: Any
) -> None:
    task = live_task(
        "fuzzed", status=TaskStatus.COMPLETE, logs=2, result={"n": 1}, result_kind="json"
    )
    body = json.loads(publish_body([task]))
    rows = body["batch"][section]["rows"]
    pick = random.Random(seed)
    row = pick.choice(rows)
    row[pick.randrange(len(row))] = value
    reply = kernel_call(server, "POST", "publish", json.dumps(body))
    assert reply.status_code in (200, 400, 403), (reply.status_code, reply.text)
    assert reply.json().get("message") or reply.status_code == 200


def test_deep_and_odd_bodies(server: JupyterServer) -> None:
    for text in ("[" * 50_000 + "]" * 50_000, '{"a": NaN}', "\x00", '{"batch": 1e999}', ""):
        reply = kernel_call(server, "POST", "publish", text)
        assert reply.status_code == 400, (reply.status_code, reply.text)


def test_the_user_api_is_healthy_after_all_of_it(server: JupyterServer) -> None:
    """Runs after the fuzzing above (same module server): every stored task reads back."""
    page = server.get("raytha-nb/api/tasks?limit=1000")
    for task in page["tasks"]:
        assert server.task(task["id"])["id"] == task["id"]
        assert 0 <= task["percent_complete"] <= 100
        server.get(f"raytha-nb/api/tasks/{task['id']}/history")
        server.get(f"raytha-nb/api/tasks/{task['id']}/logs")
    assert server.get("raytha-nb/api/status")["version"]
    assert Path(SPEC).is_file()
