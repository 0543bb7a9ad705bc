"""The same extension in Notebook 7: the panel opens from View > Left Sidebar and is live."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from raytha_nb.model import TaskStatus

from ._feed import Feed
from ._lab import Lab, notebook, start_lab
from ._ui import PANEL, percent, row, wait_until
from .conftest import shot


@pytest.fixture(scope="module")
def nb7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    server = start_lab(tmp_path_factory.mktemp("nb7"), app="notebook")
    yield server
    server.stop()


def test_panel_in_notebook_7(nb7: Lab, page: Any) -> None:
    notebook(nb7.root / "seven.ipynb", "import raytha_nb as rnb")
    page.goto(nb7.page("notebooks/seven.ipynb"))
    page.wait_for_selector(".jp-NotebookPanel", timeout=60_000)
    feed = Feed(nb7, notebook="seven.ipynb")
    live = feed.start("nb7-export", percent=25, info="page 1")
    page.locator(".lm-MenuBar-itemLabel", has_text="View").click()
    page.locator(".lm-Menu-itemLabel", has_text="Left Sidebar").hover()
    page.locator(".lm-Menu-itemLabel", has_text="Show Background Tasks").click()
    page.locator(PANEL).wait_for(state="visible")
    r = row(page, "nb7-export")
    r.wait_for(timeout=15_000)
    assert percent(r) == 25
    live.report(80, "page 4")
    feed.publish()
    wait_until(lambda: percent(r) == 80, 5, "live update in Notebook 7")
    shot(page, "notebook7-panel.png")
    live.transition(TaskStatus.COMPLETE, percent_complete=100.0)
    feed.publish()
    wait_until(lambda: r.get_attribute("data-status") == "complete", 5, "complete")
