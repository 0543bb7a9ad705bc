"""The jupyter-server extension: the task store's owner, the REST API, orphan recovery."""

from __future__ import annotations

from typing import Any

from .app import RaythaNbApp


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "raytha_nb.server.app", "app": RaythaNbApp}]
