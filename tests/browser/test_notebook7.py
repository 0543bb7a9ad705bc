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


def test_open_in_notebook_7_opens_the_notebook_page(nb7: Lab, page: Any) -> None:
    """Kernels report their notebook as an absolute path (JPY_SESSION_NAME): the server
    stores it relative to its root, so *Open* asks for the right file and Notebook 7
    opens /notebooks/<path> (it asked /api/contents/<absolute path> and got a 404)."""
    (nb7.root / "sub").mkdir()
    notebook(nb7.root / "sub" / "target.ipynb", "print('target')")
    notebook(nb7.root / "start.ipynb", "import raytha_nb as rnb")
    feed = Feed(nb7, kernel_id="kernel-nb7-open", notebook=str(nb7.root / "sub" / "target.ipynb"))
    live = feed.start("nb7-open-me", percent=10)
    assert nb7.api(f"tasks/{live.id}")["notebook"] == "sub/target.ipynb"
    page.goto(nb7.page("notebooks/start.ipynb"))
    page.wait_for_selector(".jp-NotebookPanel", timeout=60_000)
    page.locator(".lm-MenuBar-itemLabel", has_text="View").click()
    page.locator(".lm-Menu-itemLabel", has_text="Left Sidebar").hover()
    page.locator(".lm-Menu-itemLabel", has_text="Show Background Tasks").click()
    r = row(page, "nb7-open-me")
    r.wait_for(timeout=15_000)
    with page.context.expect_page(timeout=15_000) as opened:
        r.locator("[data-action='open']").click()
    target = opened.value
    target.wait_for_load_state()
    assert "/notebooks/sub/target.ipynb" in target.url, target.url
    target.wait_for_selector(".jp-NotebookPanel", timeout=60_000)
    target.locator(".jp-Cell", has_text="print('target')").wait_for(timeout=30_000)
    shot(target, "notebook7-open.png")

    # Gone: Notebook 7 shows the same message as Lab, and opens no page.
    (nb7.root / "sub" / "target.ipynb").unlink()
    pages = len(page.context.pages)
    r.locator("[data-action='open']").click()
    toast = page.locator(".Toastify__toast", has_text="was deleted or moved outside Jupyter")
    toast.wait_for(state="visible", timeout=10_000)
    assert "the notebook sub/target.ipynb was deleted" in toast.inner_text()
    page.wait_for_timeout(800)
    shot(page, "notebook7-open-gone.png")
    assert len(page.context.pages) == pages
    live.transition(TaskStatus.COMPLETE, percent_complete=100.0)
    feed.publish()
