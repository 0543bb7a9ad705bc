"""How a kernel finds its server: environment first, then its parent's runtime file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from raytha_nb import _client, _identity
from raytha_nb._manager import open_backend
from raytha_nb.backend import EmbeddedBackend


@pytest.fixture
def no_server_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("RAYTHA_NB_URL", "RAYTHA_NB_TOKEN", "RAYTHA_NB_RESULTS"):
        monkeypatch.delenv(name, raising=False)
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("RAYTHA_NB_DB", str(tmp_path / "embedded.duckdb"))
    return runtime


def test_environment_wins(no_server_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYTHA_NB_URL", "http://127.0.0.1:9/base/")
    monkeypatch.setenv("RAYTHA_NB_TOKEN", "s3cret")
    monkeypatch.setenv("RAYTHA_NB_RESULTS", "/tmp/results")
    assert _identity.discover() == _identity.ServerAddress(
        "http://127.0.0.1:9/base/", "s3cret", "/tmp/results"
    )
    backend = open_backend()
    assert isinstance(backend, _client.RemoteBackend)
    assert backend.results_dir == Path("/tmp/results")


def test_runtime_file_of_the_parent_server(no_server_env: Path) -> None:
    values = {
        "RAYTHA_NB_URL": "http://127.0.0.1:9/",
        "RAYTHA_NB_TOKEN": "t",
        "RAYTHA_NB_RESULTS": "/r",
    }
    (no_server_env / f"raytha_nb-{os.getppid()}.json").write_text(json.dumps(values))
    assert _identity.discover() == _identity.ServerAddress("http://127.0.0.1:9/", "t", "/r")


def test_no_server_means_embedded(no_server_env: Path) -> None:
    (no_server_env / "raytha_nb-1.json").write_text("{}")  # another process's server
    assert _identity.discover() is None
    backend = open_backend()
    try:
        assert isinstance(backend, EmbeddedBackend)
    finally:
        backend.close()


def test_explicit_db_is_embedded_even_under_a_server(
    no_server_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RAYTHA_NB_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("RAYTHA_NB_TOKEN", "t")
    backend = open_backend(tmp_path / "mine.duckdb")
    try:
        assert isinstance(backend, EmbeddedBackend)
    finally:
        backend.close()


def test_unreachable_server_is_a_clear_error(no_server_env: Path) -> None:
    backend = _client.RemoteBackend(_identity.ServerAddress("http://127.0.0.1:9/", "t", "/r"))
    with pytest.raises(_client.ServerError, match="cannot reach the raytha_nb server"):
        backend.get("00000000-0000-0000-0000-000000000000")
    with pytest.raises(ValueError, match="must be an http:// URL"):
        _client.RemoteBackend(_identity.ServerAddress("ftp://x/", "t"))


@pytest.mark.parametrize(
    ("ip", "url"),
    [
        ("", "http://127.0.0.1:8888/"),
        ("0.0.0.0", "http://127.0.0.1:8888/"),
        ("::", "http://[::1]:8888/"),
        ("fe80::1", "http://[fe80::1]:8888/"),
        ("10.1.2.3", "http://10.1.2.3:8888/"),
    ],
)
def test_kernels_get_a_url_their_client_can_parse(ip: str, url: str) -> None:
    from raytha_nb.server.app import kernel_url

    assert kernel_url(ip, 8888, "/") == url
    _client.RemoteBackend(_identity.ServerAddress(url, "t", "/r"))  # parses host and port
