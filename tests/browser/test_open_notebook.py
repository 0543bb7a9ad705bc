"""*Open* goes to the notebook that started a task, after a rename in Lab's UI, and says
so when that notebook is gone, never opening another file that took its name."""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
from pathlib import Path
from typing import Any

from ._lab import Lab, notebook
from ._ui import PANEL, open_notebook, open_panel, row, run_cell, wait_until
from .conftest import shot

SHOTS = Path("/tmp/shots/notebook-paths")
CURRENT = ".jp-MainAreaWidget.jp-NotebookPanel:not(.lm-mod-hidden)"
TAB_CURRENT = "#jp-main-dock-panel .lm-TabBar-tab.jp-mod-current"
TAB_TITLE = f"{TAB_CURRENT} .lm-TabBar-tabLabel"


def contents(lab: Lab, method: str, path: str, body: Any = None) -> Any:
    """Call Jupyter's contents API as the front end does."""
    req = urllib.request.Request(
        f"{lab.url}api/contents/{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"token {lab.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read()
    return json.loads(text) if text else None


def keep(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot(page, name), SHOTS / name)


def close_notebook(page: Any) -> None:
    """Close the notebook shown (discarding unsaved outputs if Lab asks)."""
    page.locator(f"{TAB_CURRENT} .lm-TabBar-tabCloseIcon").first.click()
    discard = page.locator(".jp-Dialog button", has_text="Discard")
    wait_until(
        lambda: page.locator(CURRENT).count() == 0 or (discard.count() and discard.click()),
        10,
        "the notebook closed",
    )
    wait_until(lambda: page.locator(CURRENT).count() == 0, 10, "the notebook closed")


def test_open_follows_a_rename_and_says_when_the_notebook_is_gone(lab: Lab, page: Any) -> None:
    notebook(
        lab.root / "Untitled.ipynb", "import raytha_nb as rnb", "%%background --name open-me\n42"
    )
    open_notebook(page, lab.page("lab/tree/Untitled.ipynb?reset"))
    run_cell(page, 1)
    task = wait_until(lambda: lab.api("tasks?q=open-me")["tasks"], 20, "the task is stored")[0]
    wait_until(lambda: lab.api(f"tasks/{task['id']}")["status"] == "complete", 20, "complete")
    assert task["notebook"] == "Untitled.ipynb"  # contents-relative, not /tmp/.../Untitled
    # The panel shows the row before the rename: the row must follow, not stay as drawn.
    open_panel(page)
    r = row(page, "open-me")
    wait_until(lambda: "Untitled.ipynb" in r.inner_text(), 20, "the row before the rename")

    # Rename in Lab's UI: File > Rename Notebook…
    page.locator(".lm-MenuBar-itemLabel", has_text="File").click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Rename Notebook")).click()
    field = page.locator(".jp-Dialog input")
    field.fill("analysis.ipynb")
    page.locator(".jp-Dialog .jp-mod-accept").click()
    wait_until(
        lambda: lab.api(f"tasks/{task['id']}")["notebook"] == "analysis.ipynb", 10, "REST follows"
    )
    # Through the event stream (a row drawn once had kept its old path: fixed).
    try:
        wait_until(lambda: "analysis.ipynb" in r.inner_text(), 30, "the row follows")
    except AssertionError as exc:  # (say what the row and the server hold: it failed once)
        stored = lab.api(f"tasks/{task['id']}")
        raise AssertionError(
            f"{exc}; the row says {r.inner_text()!r}, the server {stored['notebook']!r} "
            f"(updated {stored['updated_at']}); {page.locator(PANEL).inner_text()[:300]!r}"
        ) from None
    r.locator(".jp-RaythaTask-name").click()
    details = page.locator(f"{PANEL} .jp-RaythaDetails")
    details.wait_for(state="visible")
    wait_until(lambda: "analysis.ipynb" in details.inner_text(), 10, "the details follow")
    assert "Untitled.ipynb" not in details.inner_text()

    # A new Untitled.ipynb exists now; Open goes to the renamed notebook, not to it.
    contents(lab, "POST", "", {"type": "notebook"})
    assert (lab.root / "Untitled.ipynb").exists()
    close_notebook(page)
    details.locator("[data-action='open']").click()
    wait_until(lambda: page.locator(CURRENT).count() == 1, 15, "a notebook opened")
    assert page.locator(TAB_TITLE).inner_text() == "analysis.ipynb"
    assert page.locator(TAB_TITLE).inner_text() == "analysis.ipynb"
    keep(page, "open-renamed.png")

    # Deleted: Open says so and opens nothing else (not the new Untitled.ipynb).
    close_notebook(page)
    contents(lab, "DELETE", "analysis.ipynb")
    details.locator("[data-action='open']").click()
    toast = page.locator(".Toastify__toast", has_text="was deleted or moved outside Jupyter")
    toast.wait_for(state="visible", timeout=10_000)
    page.wait_for_timeout(800)  # the toast's entry animation
    assert "the notebook analysis.ipynb was deleted" in toast.inner_text()
    keep(page, "open-deleted.png")
    page.wait_for_timeout(500)
    assert page.locator(CURRENT).count() == 0  # nothing opened in its place
