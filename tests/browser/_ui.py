"""Page helpers for JupyterLab: open the panel, run cells, read what the panel shows."""

from __future__ import annotations

import re
import time
from typing import Any

from playwright.sync_api import TimeoutError as PlaywrightTimeout

PANEL = "#raytha-nb-tasks"
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"
TAB = ".jp-SideBar.jp-mod-left li[data-id='raytha-nb-tasks']"


def wait_lab(page: Any) -> None:
    page.wait_for_selector("#jp-main-dock-panel", state="attached", timeout=60_000)
    page.wait_for_selector(TAB, timeout=60_000)


def open_panel(page: Any) -> Any:
    """Show the Background Tasks sidebar (clicking its tab unless it is already shown)."""
    panel = page.locator(PANEL)
    # Lab may restore the sidebar just as the tab is clicked, and the click then hides
    # it again: click until it shows.
    deadline = time.monotonic() + 60
    while not panel.is_visible():
        page.locator(TAB).click()
        try:
            panel.wait_for(state="visible", timeout=5_000)
        except PlaywrightTimeout:
            if time.monotonic() > deadline:
                raise
    return panel


def row(page: Any, name: str) -> Any:
    name_el = page.locator(".jp-RaythaTask-name", has_text=re.compile(f"^{re.escape(name)}$"))
    return page.locator(f"{PANEL} .jp-RaythaTask", has=name_el)


def percent(locator: Any) -> float:
    text = locator.locator(".jp-RaythaTask-percent").inner_text()
    return float(text.rstrip("%"))


def wait_kernel_idle(page: Any) -> None:
    """Wait for the notebook's kernel to be idle, accepting a "Select Kernel" dialog."""
    idle = page.locator(f"{NOTEBOOK} .jp-Notebook-ExecutionIndicator[data-status='idle']")
    dialog = page.locator(".jp-Dialog .jp-mod-accept")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if dialog.count():
            dialog.first.click()
        elif idle.count():
            return
        page.wait_for_timeout(200)
    raise AssertionError("the notebook's kernel never became idle")


def open_notebook(page: Any, url: str, attempts: int = 3) -> None:
    """Open a notebook and run its first cell (its setup) to completion.

    Running the cell is how we know the kernel's websocket really connected: a browser
    can close it mid-handshake and the server then fails the upgrade
    (jupyter_server#1265), leaving a notebook whose cells queue forever. A reload
    reconnects; anything else failing here fails the test."""
    for attempt in range(attempts):
        page.goto(url) if attempt == 0 else page.reload()
        wait_lab(page)
        wait_kernel_idle(page)
        run_cell(page, 0)
        if _prompt_shows(page, 0, r"\[[0-9]+\]", 30):
            return
    raise AssertionError(f"the setup cell of {url} never ran in {attempts} page loads")


def run_cell(page: Any, index: int, attempts: int = 4) -> None:
    """Run the index-th code cell with Shift+Enter; retry while no [n]: prompt appears
    (a fresh server sometimes drops the first run key right after the kernel is idle)."""
    cell = page.locator(f"{NOTEBOOK} .jp-CodeCell").nth(index)
    for _ in range(attempts):
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        if _prompt_shows(page, index, r"\[[0-9*]+\]", 8):
            return
    prompt = cell.locator(".jp-InputArea-prompt")
    raise AssertionError(f"cell {index} never started running (prompt {prompt.inner_text()!r})")


def _prompt_shows(page: Any, index: int, pattern: str, seconds: float) -> bool:
    """Whether the index-th code cell's prompt matches ``pattern`` within ``seconds``."""
    prompt = page.locator(f"{NOTEBOOK} .jp-CodeCell").nth(index).locator(".jp-InputArea-prompt")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if re.search(pattern, prompt.inner_text()):
            return True
        page.wait_for_timeout(100)
    return False


def wait_until(check: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def widen_sidebar(page: Any, width: int = 420) -> None:
    """Drag the left sidebar's edge so rows show in full (for screenshots)."""
    panel = page.locator(PANEL)
    box = panel.bounding_box()
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    hb = handle.bounding_box()
    if not box or not hb:
        return
    page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + width, hb["y"] + hb["height"] / 2, steps=5)
    page.mouse.up()
