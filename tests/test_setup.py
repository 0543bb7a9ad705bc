"""scripts/_setup.sh runs pip only when pyproject.toml, the extras or the lab extension changed.

A real bash runs the real script in a copy of the project's files; pip is replaced (through
``RAYTHA_NB_PIP``) by a recorder, so this proves the decision to reinstall, not pip itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def project(tmp_path: Path) -> Path:
    """A copy of what _setup.sh reads, with a .venv whose python is this one (no venv made)."""
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "_setup.sh", root / "scripts")
    shutil.copy(ROOT / "pyproject.toml", root)
    (root / "labextension").mkdir()
    shutil.copy(ROOT / "labextension" / "package.json", root / "labextension")
    shutil.copytree(ROOT / "labextension" / "src", root / "labextension" / "src")
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "python").symlink_to(sys.executable)
    return root


def setup(root: Path, extras: str = "test", exit_code: int = 0) -> list[str]:
    """Source _setup.sh once; the pip command lines it ran."""
    log = root / "pip.log"
    log.unlink(missing_ok=True)
    pip = root / "fake-pip"
    pip.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexit {exit_code}\n')
    pip.chmod(0o755)
    env = {**os.environ, "RAYTHA_NB_PIP": str(pip), "EXTRAS": extras}
    done = subprocess.run(
        ["bash", "-c", 'source scripts/_setup.sh; echo "PATH=$PATH"'],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode == 0) == (exit_code == 0), done.stderr
    if exit_code == 0:
        assert f"PATH={root}/.venv/bin:" in done.stdout
    return log.read_text().splitlines() if log.exists() else []


def test_second_setup_skips_pip_and_changes_reinstall(tmp_path: Path) -> None:
    root = project(tmp_path)
    first = setup(root)
    assert first == [
        "install -q --disable-pip-version-check -U pip",
        "install -q --disable-pip-version-check -e .[test]",
    ]
    assert setup(root) == []  # nothing changed
    with (root / "pyproject.toml").open("a") as f:
        f.write("\n# a new dependency would go here\n")
    assert len(setup(root)) == 2
    assert setup(root) == []
    (root / "labextension" / "src" / "format.ts").write_text("export const changed = 1;\n")
    assert len(setup(root)) == 2
    assert setup(root, extras="examples")[-1].endswith("-e .[examples]")
    assert setup(root, extras="examples") == []


def test_failed_install_is_retried_next_time(tmp_path: Path) -> None:
    root = project(tmp_path)
    assert setup(root, exit_code=1) == ["install -q --disable-pip-version-check -U pip"]
    assert len(setup(root)) == 2  # no stamp was written for the failed run
    assert setup(root) == []


def test_examples_extra_holds_what_the_notebooks_and_front_ends_import() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    names = {d.split(">")[0].split("<")[0].split("[")[0] for d in extras["examples"]}
    assert {"notebook", "pandas", "polars", "matplotlib", "tqdm"} <= names
    assert "raytha-nb[lab]" in extras["examples"] and "raytha-nb[examples]" in extras["test"]
    assert "EXTRAS=examples" in (ROOT / "scripts" / "start.sh").read_text()
