"""Authorization: a Jupyter authorizer that denies the ``raytha_nb`` resource closes the API."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from jupyter_server.auth import Authorizer
from tornado.httpclient import HTTPClientError

pytest_plugins = ("pytest_jupyter.jupyter_server",)


class DenyRaythaNb(Authorizer):
    """Allows everything except the raytha_nb resource."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return resource != "raytha_nb"


@pytest.fixture
def jp_server_config(tmp_path: Path) -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"raytha_nb": True},
            "authorizer_class": DenyRaythaNb,
        },
        "RaythaNbApp": {"db_path": str(tmp_path / "tasks.duckdb"), "retention_days": 0},
    }


@pytest.mark.parametrize(
    ("method", "parts"),
    [
        ("GET", ("tasks",)),
        ("GET", ("tasks", "00000000-0000-0000-0000-000000000000")),
        ("GET", ("status",)),
        ("GET", ("events",)),
        ("POST", ("tasks", str(uuid.uuid4()), "cancel")),
        ("DELETE", ("tasks",)),
        ("POST", ("notebook-jobs",)),
        ("GET", ("notebook-jobs", "parameters")),
        ("GET", ("schedules",)),
        ("POST", ("schedules",)),
        ("GET", ("schedules", str(uuid.uuid4()))),
        ("DELETE", ("schedules", str(uuid.uuid4()))),
        ("POST", ("schedules", str(uuid.uuid4()), "pause")),
        ("POST", ("schedules", str(uuid.uuid4()), "resume")),
        ("POST", ("schedules", str(uuid.uuid4()), "trigger")),
        ("GET", ("schedules", str(uuid.uuid4()), "events")),
    ],
)
async def test_denied_by_the_authorizer(jp_fetch: Any, method: str, parts: tuple[str, ...]) -> None:
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch(
            "raytha-nb", "api", *parts, method=method, body="" if method == "POST" else None
        )
    assert caught.value.code == 403
    assert caught.value.response is not None
    error = json.loads(caught.value.response.body)
    assert "not authorized" in error["message"] and "raytha_nb" in error["message"]


async def test_the_same_token_still_opens_the_rest_of_jupyter(jp_fetch: Any) -> None:
    response = await jp_fetch("api", "status")
    assert response.code == 200
