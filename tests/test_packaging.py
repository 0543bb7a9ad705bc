"""The wheel is all a user installs: it carries the prebuilt labextension and the config
that enables the server extension, and Jupyter's own listings accept both."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from raytha_nb import __version__

ROOT = Path(__file__).resolve().parents[1]
DATA = f"raytha_nb-{__version__}.data/data/"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, with the labextension the setup built (SKIP_JUPYTER_BUILDER): building
    it again rewrites raytha_nb/labextension in this checkout, and a browser test on the
    other pytest worker found it missing meanwhile. The setup's editable install runs
    the same build hook, so the build itself is exercised there."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(out)],
        check=True,
        env={**os.environ, "SKIP_JUPYTER_BUILDER": "1"},
    )
    (found,) = out.glob("raytha_nb-*.whl")
    return found


@pytest.fixture(scope="module")
def env(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv with the wheel installed, as pip does for a user. Its dependencies
    come from this test environment through a .pth line (no download), but not this
    checkout: the .pth files there (our editable install) are not read."""
    root = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(root)}))
    (site / "_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # --python: install into the new venv, never touching (or uninstalling from) this one.
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(root / "bin" / "python"),
         "install", "-q", "--no-deps", str(wheel)],
        check=True,
    )  # fmt: skip
    return root


def run(env: Path, *args: str) -> str:
    """Run ``python -m ...`` in the new venv, away from this checkout."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "PYTHON"))}
    environ.update(NO_COLOR="1", JUPYTER_CONFIG_DIR=str(env / "user-config"))
    done = subprocess.run(
        [str(env / "bin" / "python"), *args],
        env=environ, cwd=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)


def section(listing: str, directory: Path) -> str:
    """The part of a Jupyter listing printed under ``directory``."""
    _, _, rest = listing.partition(str(directory))
    assert rest, f"{directory} not in:\n{listing}"
    return re.split(r"\n(?=\S)", rest, maxsplit=1)[0]


def test_wheel_carries_the_labextension_and_the_server_config(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    lab = f"{DATA}share/jupyter/labextensions/raytha-nb/"
    assert f"{lab}package.json" in names
    assert any(re.fullmatch(rf"{re.escape(lab)}static/remoteEntry\.\w+\.js", n) for n in names)
    assert f"{lab}schemas/raytha-nb/plugin.json" in names  # the Settings editor's schema
    assert f"{DATA}etc/jupyter/jupyter_server_config.d/raytha_nb.json" in names


def test_jupyter_lists_both_extensions_enabled_and_ok(env: Path) -> None:
    origin = run(env, "-c", "import raytha_nb; print(raytha_nb.__file__)")
    assert origin.startswith(str(env)), origin  # the installed copy, not this checkout

    listing = run(env, "-m", "jupyterlab.labextensions", "list")
    labext = section(listing, env / "share" / "jupyter" / "labextensions")
    assert re.search(rf"raytha-nb v{re.escape(__version__)} enabled\s+OK", labext), listing

    listing = run(env, "-m", "jupyter_server.extension.serverextension", "list")
    config = section(listing, env / "etc" / "jupyter")
    assert "raytha_nb enabled" in config, listing
    assert re.search(rf"raytha_nb {re.escape(__version__)}\s+OK", config), listing
