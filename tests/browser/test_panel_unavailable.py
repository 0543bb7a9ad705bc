"""Without the server extension the panel says so plainly (and offers a retry), no spinner."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ._lab import Lab, start_lab
from ._ui import PANEL, open_panel, wait_lab
from .conftest import shot


@pytest.fixture(scope="module")
def bare_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    server = start_lab(tmp_path_factory.mktemp("bare"), server_extension=False)
    yield server
    server.stop()


def test_panel_says_server_extension_is_missing(bare_lab: Lab, page: Any) -> None:
    page.goto(bare_lab.page("lab"))
    wait_lab(page)
    panel = open_panel(page)
    banner = panel.locator(".jp-RaythaPanel-banner")
    banner.wait_for(state="visible", timeout=15_000)
    text = banner.inner_text()
    assert "server extension is not available" in text
    assert "jupyter server extension enable raytha_nb" in text
    assert panel.get_attribute("data-state") == "unavailable"
    assert panel.locator(".jp-RaythaPanel-retry").is_visible()
    # Nothing spins: no row, no "connecting" text left behind.
    assert page.locator(f"{PANEL} .jp-RaythaTask").count() == 0
    assert "connecting" not in panel.locator(".jp-RaythaPanel-summary").inner_text()
    # The status bar item stays hidden: there is nothing running to count.
    assert (
        page.locator(".jp-RaythaStatus").count() == 0
        or not page.locator(".jp-RaythaStatus").is_visible()
    )
    shot(page, "panel-unavailable.png")
