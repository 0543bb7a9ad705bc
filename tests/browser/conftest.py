"""Browser test fixtures: a real JupyterLab per module and Debian's Chromium via Playwright."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright import sync_api as playwright_sync

from ._lab import CHROMIUM, CHROMIUM_ARGS, OUTPUT, Lab, start_lab

DARK = {"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"}}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Chromium for one test module. Not session-wide: Playwright's sync API keeps an
    event loop running while open, which would break the asyncio tests of other modules."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run 'apt-get install -y chromium' (test.sh does)")
    with playwright_sync.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab with both halves of raytha_nb: server extension and labextension."""
    server = start_lab(tmp_path_factory.mktemp("lab"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def dark_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A second JupyterLab whose theme is JupyterLab Dark, for the dark screenshots."""
    server = start_lab(tmp_path_factory.mktemp("dark"), settings=DARK)
    yield server
    server.stop()


@pytest.fixture
def page(browser: object, request: pytest.FixtureRequest) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    # Leave the page when JupyterLab asks about unsaved changes (a reload mid-test):
    # Playwright's default, dismissing, would cancel the navigation.
    pg.on("dialog", lambda dialog: dialog.accept())
    yield pg
    OUTPUT.mkdir(exist_ok=True)
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        pg.screenshot(path=str(OUTPUT / f"FAILED-{request.node.name}.png"))
    context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


def shot(target: object, name: str, folder: Path = OUTPUT) -> Path:
    """Save a screenshot of a page or an element to ``folder`` (test-output/ unless
    given), to be looked at by a person, not compared."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    target.screenshot(path=str(path))  # type: ignore[attr-defined]
    return path
