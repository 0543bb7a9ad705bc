"""Run as Job… (real JupyterLab, server workers, Chromium): a parameterised notebook's
right-click menu in the file browser opens a form of its parameters, prefilled with their
defaults; the job starts with the one changed, shows selected in the panel, runs to
complete, and its details open the executed notebook and link its HTML copy. The command
palette offers it for the notebook in front."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from playwright.sync_api import TimeoutError as PlaywrightTimeout

from ._lab import Lab
from ._ui import PANEL, wait_kernel_idle, wait_lab, wait_until
from .conftest import shot

SHOTS = Path("/tmp/shots/notebook-job-ui")
DETAILS = f"{PANEL} .jp-RaythaDetails"


def parameterised(path: Path) -> None:
    """A notebook with a cell tagged ``parameters`` and one that prints what it got."""
    cells = [
        ("greeting = 'hi'\nrepeat = 2  # how many times", ["parameters"]),
        ("print(f'<{greeting * repeat}>')", []),
    ]
    nb = {
        "cells": [
            {"cell_type": "code", "id": f"c{i}", "metadata": {"tags": tags}, "source": src,
             "outputs": [], "execution_count": None}
            for i, (src, tags) in enumerate(cells)
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))


def search_palette(page: Any, text: str) -> None:
    """Open Lab's command palette with its shortcut from the notebook in front, and type
    ``text`` (a palette that opens while focus still moves closes again: try again)."""
    wait_kernel_idle(page)  # its kernel starting moves the focus
    palette = page.locator(".lm-CommandPalette-input")
    for _ in range(5):
        page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").click()
        page.keyboard.press("Escape")
        page.keyboard.press("Control+Shift+C")
        try:
            palette.fill(text, timeout=2_000)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError("the command palette never opened")


def test_run_as_job_fills_a_parameter_and_opens_the_executed_notebook(lab: Lab, page: Any) -> None:
    parameterised(lab.root / "reports" / "greet.ipynb")
    expected = lab.api("notebook-jobs/parameters?path=reports/greet.ipynb")
    assert [p["name"] for p in expected["parameters"]] == ["greeting", "repeat"]
    page.goto(lab.page("lab/tree/reports?reset"))
    wait_lab(page)
    item = page.locator(".jp-DirListing-item[data-file-type='notebook']", has_text="greet.ipynb")
    item.click(button="right")
    page.locator(".lm-Menu-item", has_text="Run as Job…").click()

    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    assert "Run greet.ipynb as a job" in dialog.inner_text()
    assert "read as JSON" in dialog.inner_text()
    fields = dialog.locator(".jp-RaythaJobForm-value")
    shown = fields.evaluate_all("fs => fs.map(f => [f.dataset.parameter, f.value])")
    assert shown == [[p["name"], p["default"]] for p in expected["parameters"]]
    assert dialog.locator(".jp-RaythaJobForm-name").input_value() == "greet"
    dialog.locator(".jp-RaythaJobForm-value[data-parameter='repeat']").fill("3")
    dialog.locator(".jp-RaythaJobForm-name").fill("greet-thrice")
    dialog.locator(".jp-RaythaJobForm-option[data-option='retries']").fill("1")
    shot(page, "dialog-light.png", SHOTS)
    dialog.locator(".jp-mod-accept").click()

    # The new task is selected in the panel and runs to the end, live.
    details = page.locator(DETAILS)
    details.locator(".jp-RaythaDetails-name", has_text="greet-thrice").wait_for(timeout=15_000)
    task_id = details.get_attribute("data-task-id")
    task = lab.api(f"tasks/{task_id}")
    # Only the changed field is sent, read as JSON (an int); the other keeps its default.
    assert task["args"]["parameters"] == {"repeat": 3}
    assert task["executor"] == "server" and task["name"] == "greet-thrice"
    wait_until(lambda: details.get_attribute("data-status") == "complete", 90, "the job done")
    open_result = details.locator("[data-action='open-result']")
    open_result.wait_for()
    shot(page, "details-light.png", SHOTS)
    done = lab.api(f"tasks/{task_id}")
    assert done["max_attempts"] == 2 and done["attempt"] == 1  # retries=1 from the form
    result = done["result"]

    # Download HTML: a plain /files/ link to the HTML copy, which holds the job's output.
    html = details.locator("[data-action='download-html']")
    href = html.get_attribute("href")
    assert href and f"/files/{result['html']}" in href
    with urllib.request.urlopen(href, timeout=10) as resp:
        assert "&lt;hihihi&gt;" in resp.read().decode()

    # Open executed notebook: it opens in Lab, its output there.
    open_result.click()
    executed = Path(result["notebook"]).name
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=executed).wait_for(timeout=20_000)
    output = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output")
    wait_until(lambda: "<hihihi>" in " ".join(output.all_inner_texts()), 20, "the job's output")
    shot(page, "executed-light.png", SHOTS)

    # From the command palette: the notebook in front (here the executed one).
    search_palette(page, "Run as Job")
    # Enter runs the active (first) match: the palette re-renders its items as it
    # filters, so a click may land on a detached one.
    page.locator(".lm-CommandPalette-item.lm-mod-active", has_text="Run as Job…").wait_for()
    page.locator(".lm-CommandPalette-input").press("Enter")
    dialog.wait_for()
    assert f"Run {executed} as a job" in dialog.inner_text()
    dialog.locator(".jp-mod-reject").click()
    dialog.wait_for(state="detached")
    assert len(lab.api("tasks")["tasks"]) == 1  # Cancel starts nothing
