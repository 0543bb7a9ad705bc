"""Every example notebook, opened in a real JupyterLab and run with *Run All*, as a new user does.

Each ends with every code cell executed and no error output; a screenshot of each, the whole
notebook in one tall image, is saved under test-output/examples/ (and /tmp/shots/examples/)
for a person to look at. One JupyterLab serves every notebook (the module's ``lab``).
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ._lab import OUTPUT, ROOT, Lab
from ._ui import NOTEBOOK, open_notebook, wait_until

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SHOTS = [OUTPUT / "examples", Path("/tmp/shots/examples")]
ERROR = f"{NOTEBOOK} .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']"
# A task's cell widget (renderer.ts) while the task has not ended.
ACTIVE = f"{NOTEBOOK} .raytha-nb-task:is([data-status='enqueued'], [data-status='processing'])"

pytestmark = pytest.mark.timeout(300)


def run_all(page: Any, lab: Lab, path: Path, timeout: float = 150) -> None:
    """Open a fresh copy of ``path`` and run *Run All Cells* from the Run menu, to the end.

    ``?reset``: open only this notebook. Without it JupyterLab restores the workspace of
    the previous test, with its notebooks in tabs that stay in the DOM (hidden by
    content-visibility, not ``lm-mod-hidden``), so ``NOTEBOOK`` would match theirs too."""
    shutil.copy(path, lab.root / path.name)
    open_notebook(page, lab.page(f"lab/tree/{path.name}?reset"))  # proves the kernel connected
    assert page.locator(NOTEBOOK).count() == 1
    empty_store(lab)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    prompts = page.locator(f"{NOTEBOOK} .jp-CodeCell .jp-InputPrompt")
    idle = page.locator(f"{NOTEBOOK} .jp-Notebook-ExecutionIndicator[data-status='idle']")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # textContent: cells scrolled out of view render no inner text.
        texts = prompts.evaluate_all("els => els.map(e => e.textContent.trim())")
        # An error stops Run All, leaving the cells after it unrun: fail now, with it.
        errors = page.locator(ERROR)
        assert errors.count() == 0, f"{path.name}: {errors.all_text_contents()}"
        if texts and all(re.fullmatch(r"\[\d+\]:", t) for t in texts) and idle.count():
            return
        page.wait_for_timeout(500)
    raise AssertionError(f"{path.name}: not every cell ran within {timeout:.0f} s: {texts}")


def empty_store(lab: Lab) -> None:
    """Start each notebook from an empty task store, as a new user does: the task-history
    timeline shows its own jobs, not the previous notebooks' (nor the job a setup cell
    run by ``open_notebook`` started: monitor-from-another-notebook's first cell)."""

    def emptied() -> bool:
        # Again until it holds: on a loaded machine the setup cell's job can reach the
        # store only after a first look found nothing running (CI once kept it).
        if any(lab.api("status")["tasks"].values()):
            return False
        lab.api("tasks?finished=true", "DELETE")
        return bool(lab.api("tasks")["total"] == 0)

    wait_until(emptied, 60, "an empty store")


def shoot(page: Any, name: str) -> None:
    """Screenshot the whole notebook: grow the viewport to the height of its cells, plus
    room at the bottom for notifications so they cover no output."""
    scroller = page.locator(f"{NOTEBOOK} .jp-WindowedPanel-outer")
    extra = page.viewport_size["height"] - scroller.evaluate("e => e.clientHeight")
    # Twice: outputs shown in the taller view (a task's result preview) can grow it.
    for _ in range(2):
        content = scroller.evaluate(
            """e => {
                e.scrollTop = 0;  // Run All left it at the last cell
                const cells = e.querySelectorAll('.jp-Cell');
                const last = cells[cells.length - 1].getBoundingClientRect();
                return last.bottom - e.getBoundingClientRect().top;
            }"""
        )
        height = min(int(content + extra + 200), 12_000)
        page.set_viewport_size({"width": 1400, "height": height})
        page.wait_for_timeout(1500)  # relayout; plots, widgets and previews redraw
    for folder in SHOTS:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"))


def shut_down_kernels(lab: Lab) -> None:
    """Stop this notebook's kernel: the next notebook should not share the two cores."""
    for session in _server_api(lab, "api/sessions"):
        _server_api(lab, f"api/sessions/{session['id']}", "DELETE")


def _server_api(lab: Lab, path: str, method: str = "GET") -> Any:
    headers = {"Authorization": f"token {lab.token}"}
    req = urllib.request.Request(f"{lab.url}{path}", method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = resp.read()
    return json.loads(body) if body else None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_example_runs_all_in_jupyterlab(page: Any, lab: Lab, path: Path) -> None:
    try:
        run_all(page, lab, path)
        cells = page.locator(f"{NOTEBOOK} .jp-CodeCell")
        assert cells.count() == sum(c["cell_type"] == "code" for c in _cells(path))
        # Every task the notebook started shows its end in its cell's widget.
        active = page.locator(ACTIVE)
        deadline = time.monotonic() + 30
        while active.count() and time.monotonic() < deadline:
            page.wait_for_timeout(250)
        assert active.count() == 0, active.all_text_contents()
        shoot(page, path.stem)
    finally:
        shut_down_kernels(lab)


def _cells(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text())["cells"]  # type: ignore[no-any-return]
