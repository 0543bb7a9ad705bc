"""A task's cell output rendered by the lab extension (real JupyterLab, kernels, Chromium):
truthful across a kernel restart and after reopening, in the light and dark themes, and
honest about having no live source without the server extension."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._lab import Lab, notebook, start_lab
from ._ui import NOTEBOOK, open_notebook, run_cell, wait_until
from .conftest import shot
from .test_notebook_tasks import SETUP, slow_cell

SHOTS = Path("/tmp/shots/cell-output")
CELL = f"{NOTEBOOK} .jp-RaythaCell"

QUICK = "%%background --name quick-answer\ntime.sleep(0.5)\n42"
FAILING = "%%background --name exploding-cell\ntime.sleep(0.3)\n{'a': 1}['missing-key']"
FRAME = (
    "frame_job = rnb.sql('SELECT range AS n, range * range AS sq FROM range(500)', name='squares')"
)
WAIT = "for t in rnb.list_tasks():\n    rnb.wait(t.id)"
# The bare ipywidget (no raytha_nb mime type around it), to see the widget's own colours.
BARE = (
    "import ipywidgets\n"
    "ipywidgets.VBox([rnb.TaskProgress(rnb.list_tasks(name='exploding-cell')[0].id)])"
)


@pytest.fixture(scope="module")
def bare_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab with the labextension but no server extension: kernels are embedded."""
    server = start_lab(tmp_path_factory.mktemp("bare"), server_extension=False)
    yield server
    server.stop()


@pytest.fixture(params=["light", "dark"])
def themed(request: pytest.FixtureRequest) -> tuple[Lab, str]:
    name = "dark_lab" if request.param == "dark" else "lab"
    return request.getfixturevalue(name), request.param


def jupyter(lab: Lab, path: str, method: str = "GET") -> Any:
    """Call Jupyter's own REST API (kernels, sessions)."""
    req = urllib.request.Request(
        f"{lab.url}api/{path}",
        method=method,
        data=b"{}" if method == "POST" else None,
        headers={"Authorization": f"token {lab.token}"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = resp.read()
    return json.loads(body) if body else None


def output(page: Any, name: str) -> Any:
    return page.locator(CELL, has_text=name)


def status(page: Any, name: str) -> str | None:
    found = output(page, name)
    return found.get_attribute("data-status") if found.count() == 1 else None


def percent(page: Any, name: str) -> float:
    return float(output(page, name).locator(".jp-RaythaCell-percent").inner_text().rstrip("%"))


def cell_text(page: Any, index: int) -> str:
    return str(page.locator(f"{NOTEBOOK} .jp-CodeCell").nth(index).inner_text())


def save_and_reload(page: Any, lab: Lab, path: str) -> None:
    page.keyboard.press("Control+s")
    wait_until(lambda: "dirty" not in (page.title() or ""), 5, "saved")
    page.wait_for_timeout(800)
    open_notebook(page, lab.page(f"lab/tree/{path}?reset"))


def styles(page: Any, selector: str) -> dict[str, str]:
    return dict(
        page.evaluate(
            """(sel) => {
          const probe = (v) => { const d = document.createElement('div');
            d.style.color = `var(${v})`; document.body.append(d);
            const c = getComputedStyle(d).color; d.remove(); return c; };
          const node = document.querySelector(sel);
          const s = getComputedStyle(node);
          return { bg: s.backgroundColor, fg: s.color, font1: probe('--jp-content-font-color1'),
                   border: s.borderLeftColor, error1: probe('--jp-error-color1'),
                   page: probe('--jp-layout-color1') };
        }""",
            selector,
        )
    )


def rgba(css: str) -> list[float]:
    parts = [float(p) for p in css[css.index("(") + 1 : -1].split(",")]
    return parts + [1.0] * (4 - len(parts))


def luminance(css: str, over: str = "rgb(255, 255, 255)") -> float:
    """0 (black) to 1 (white) of an ``rgb(...)``/``rgba(...)`` colour drawn over ``over``."""
    *fg, alpha = rgba(css)
    bg = rgba(over)[:3]
    r, g, b = (alpha * f + (1 - alpha) * o for f, o in zip(fg, bg, strict=True))
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_kernel_restart_mid_task_shows_interrupted(themed: tuple[Lab, str], page: Any) -> None:
    lab, theme = themed
    path = f"restart-{theme}.ipynb"
    notebook(lab.root / path, SETUP, slow_cell("restart-victim", steps=400), slow_cell("stop-me"))
    open_notebook(page, lab.page(f"lab/tree/{path}?reset"))
    run_cell(page, 1)
    run_cell(page, 2)
    out = output(page, "restart-victim")
    out.wait_for(timeout=30_000)
    wait_until(lambda: status(page, "restart-victim") == "processing", 20, "running")
    wait_until(lambda: percent(page, "restart-victim") > 0, 20, "progress")
    # Cancel shows once the cell follows the server's feed (the kernel's own output can
    # show progress first: on a loaded machine, CI, the feed came a moment later).
    cancel = out.locator(".jp-RaythaCell-cancel")
    wait_until(cancel.is_visible, 20, "the cancel button of a running task")
    # A task just started is not yet "not in the store" (its first publish is on its way).
    wait_until(lambda: status(page, "stop-me") in ("enqueued", "processing"), 20, "second")
    assert output(page, "stop-me").locator(".jp-RaythaCell-note").is_hidden()
    shot(page, f"running-{theme}.png", SHOTS)

    # Cancel in the cell goes through REST: the server and the cell agree.
    output(page, "stop-me").locator(".jp-RaythaCell-cancel").click()
    wait_until(lambda: status(page, "stop-me") == "cancelled", 20, "cancelled in the cell")
    assert lab.api("tasks?q=stop-me")["tasks"][0]["status"] == "cancelled"

    task = lab.api("tasks?q=restart-victim")["tasks"][0]
    jupyter(lab, f"kernels/{task['kernel_id']}/restart", "POST")
    wait_until(lambda: status(page, "restart-victim") == "interrupted", 30, "interrupted")
    assert not out.locator(".jp-RaythaCell-cancel").is_visible()  # nothing to cancel
    # Why: the interrupted row may reach the cell a moment before its reason does.
    info = out.locator(".jp-RaythaCell-info")
    wait_until(lambda: "while it ran" in info.inner_text(), 10, "the reason it ended")
    assert percent(page, "restart-victim") < 100
    shot(page, f"interrupted-{theme}.png", SHOTS)

    # The saved output says "processing" (its kernel died mid-task); the server knows better.
    save_and_reload(page, lab, path)
    wait_until(lambda: status(page, "restart-victim") == "interrupted", 30, "after reload")
    assert "model not found" not in cell_text(page, 1)


def test_reopened_notebook_shows_final_states(themed: tuple[Lab, str], page: Any) -> None:
    lab, theme = themed
    path = f"reopen-{theme}.ipynb"
    notebook(lab.root / path, SETUP, QUICK, FAILING, FRAME, WAIT, BARE)
    open_notebook(page, lab.page(f"lab/tree/{path}?reset"))
    for index in (1, 2, 3, 4):
        run_cell(page, index)
    wait_until(lambda: status(page, "quick-answer") == "complete", 30, "complete")
    wait_until(lambda: status(page, "exploding-cell") == "error", 30, "error")
    wait_until(lambda: status(page, "squares") == "complete", 30, "frame complete")
    assert "result: 42" in output(page, "quick-answer").inner_text()
    traceback = output(page, "exploding-cell").locator(".jp-RaythaCell-traceback")
    assert "KeyError" in traceback.inner_text() and "missing-key" in traceback.inner_text()
    table = output(page, "squares").locator("table.jp-RaythaCell-table")
    table.wait_for(timeout=10_000)
    assert table.locator("th").all_inner_texts() == ["n", "sq"]
    assert table.locator("tbody tr").count() == 10
    assert table.locator("tbody tr").nth(3).locator("td").all_inner_texts() == ["3", "9"]
    assert "500 rows, 2 columns (first 10 shown)" in output(page, "squares").inner_text()
    # The link needs the live source (the server's result URL); the saved table may come first.
    download = output(page, "squares").locator("a", has_text="Download")
    download.wait_for(timeout=10_000)
    assert download.count() == 1

    # Theme colours for the traceback, in this renderer and in the bare ipywidget.
    run_cell(page, 5)
    page.locator(f"{NOTEBOOK} .widget-vbox .raytha-nb-traceback").wait_for(timeout=30_000)
    for selector in (
        f"{CELL}[data-status='error'] .jp-RaythaCell-traceback",
        f"{NOTEBOOK} .widget-vbox .raytha-nb-traceback",
    ):
        c = styles(page, selector)
        assert c["fg"] == c["font1"] and c["border"] == c["error1"], (selector, c)
        if theme == "dark":
            assert luminance(c["bg"], c["page"]) < 0.35, (selector, c)  # not light pink
            assert luminance(c["fg"], c["page"]) > 0.6, (selector, c)
        else:
            assert luminance(c["bg"], c["page"]) > 0.8, (selector, c)
            assert luminance(c["fg"], c["page"]) < 0.3, (selector, c)
    page.locator(f"{NOTEBOOK} .jp-CodeCell").nth(2).scroll_into_view_if_needed()
    shot(page, f"finished-{theme}.png", SHOTS)

    # Reopened with a fresh kernel: the widgets' models are gone, the outputs are not.
    jupyter(lab, f"kernels/{page_kernel(lab, 'quick-answer')}", "DELETE")
    save_and_reload(page, lab, path)
    wait_until(lambda: status(page, "quick-answer") == "complete", 30, "reopened")
    assert status(page, "exploding-cell") == "error" and status(page, "squares") == "complete"
    assert "result: 42" in output(page, "quick-answer").inner_text()
    assert output(page, "squares").locator("tbody tr").count() == 10
    for index in (1, 2, 3):
        assert "model not found" not in cell_text(page, index)
        assert "Error displaying widget" not in cell_text(page, index)
    page.locator(f"{NOTEBOOK} .jp-CodeCell").nth(1).scroll_into_view_if_needed()
    shot(page, f"reopened-{theme}.png", SHOTS)


def page_kernel(lab: Lab, name: str) -> str:
    return str(lab.api(f"tasks?q={name}")["tasks"][0]["kernel_id"])


def test_without_the_server_the_output_says_so_and_shows_the_saved_state(
    bare_lab: Lab, page: Any
) -> None:
    notebook(bare_lab.root / "embedded.ipynb", SETUP, QUICK, WAIT)
    open_notebook(page, bare_lab.page("lab/tree/embedded.ipynb?reset"))
    run_cell(page, 1)
    run_cell(page, 2)
    out = output(page, "quick-answer")
    # The kernel re-sends the output when the task ends: the saved state is the final one.
    wait_until(lambda: status(page, "quick-answer") == "complete", 30, "final state")
    note = out.locator(".jp-RaythaCell-note")
    assert "No live source" in note.inner_text() and "server extension" in note.inner_text()
    assert "result: 42" in out.inner_text()
    assert not out.locator(".jp-RaythaCell-cancel").is_visible()
    assert out.get_attribute("data-source") == "saved"
    shot(page, "embedded-light.png", SHOTS)
