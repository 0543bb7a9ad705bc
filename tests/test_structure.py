"""The package's shape, checked: no import cycle, no hidden imports, no public name
that shadows a module, and no side effects where they do not belong."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "raytha_nb"
#: Function-level imports of raytha_nb modules that are allowed, and why.
ALLOWED_LAZY = {
    # The jupyter-server hook: kernels must not import the server's application code.
    ("raytha_nb", "raytha_nb.server"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The raytha_nb modules an import statement imports."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "raytha_nb"]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    if target.split(".")[0] != "raytha_nb":
        return []
    # ``from . import x`` imports the submodule x when there is one.
    found = []
    for alias in node.names:
        candidate = f"{target}.{alias.name}"
        if (PACKAGE.parent / Path(*candidate.split("."))).with_suffix(".py").exists() or (
            PACKAGE.parent / Path(*candidate.split(".")) / "__init__.py"
        ).exists():
            found.append(candidate)
        else:
            found.append(target)
    return found


def _graph() -> tuple[dict[str, set[str]], list[tuple[str, str, int]]]:
    """Module -> modules it imports at module level; and every function-level import."""
    edges: dict[str, set[str]] = {}
    lazy: list[tuple[str, str, int]] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "labextension" in path.parts:
            continue
        module = _module_name(path)
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), str(path))
        edges.setdefault(module, set())
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            targets = [t for t in _resolve(module, is_package, node) if t != module]
            if node.col_offset == 0:
                edges[module].update(targets)
            else:
                lazy.extend((module, t, node.lineno) for t in targets)
        if "TYPE_CHECKING" in path.read_text():
            # Imports under ``if TYPE_CHECKING:`` are for the type checker only.
            for node in ast.walk(tree):
                if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
                    for inner in node.body:
                        if isinstance(inner, (ast.Import, ast.ImportFrom)):
                            for t in _resolve(module, is_package, inner):
                                edges[module].discard(t)
                                lazy[:] = [x for x in lazy if x[:2] != (module, t)]
    return edges, lazy


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by depth-first search (a package importing its own submodules,
    ``raytha_nb`` -> ``raytha_nb.x``, is how re-exports work and is not a cycle unless
    the submodule imports the package back)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def test_the_package_has_no_import_cycle() -> None:
    edges, _ = _graph()
    # A submodule importing its parent package would close a loop through __init__.
    assert _cycles(edges) == []
    assert len(edges) > 30  # the walk really saw the package


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_function_level_imports_of_the_package() -> None:
    _, lazy = _graph()
    hidden = [(m, t, line) for m, t, line in lazy if (m, t) not in ALLOWED_LAZY]
    assert hidden == [], "import these at the top of the module (or break the cycle)"


def test_no_public_name_shadows_a_module() -> None:
    """``raytha_nb.manager`` once was both a module and the function that replaced it."""
    import raytha_nb
    import raytha_nb.server
    import raytha_nb.tasks

    for package in (raytha_nb, raytha_nb.server, raytha_nb.tasks):
        folder = Path(package.__file__).parent  # type: ignore[arg-type]
        modules = {p.stem for p in folder.glob("*.py")} | {
            p.name for p in folder.iterdir() if (p / "__init__.py").exists()
        }
        for name in modules - {"__init__"}:
            value = getattr(package, name, None)
            assert value is None or type(value).__name__ == "module", (
                f"{package.__name__}.{name} is a {type(value).__name__}, shadowing a module"
            )


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_server_process_gets_nothing_patched() -> None:
    """The jupyter server imports raytha_nb.server (and so raytha_nb): no stdout or tqdm
    patching there, nor in a script that only imports raytha_nb."""
    probe = (
        "import sys, tqdm.std\n"
        "import raytha_nb.server.app, raytha_nb\n"
        "from raytha_nb.context import TaskOutput\n"
        "print(isinstance(sys.stdout, TaskOutput), "
        "getattr(tqdm.std.tqdm.__init__, '_raytha_nb', False))"
    )
    assert _run(probe) == "False False"


def test_a_process_that_runs_tasks_routes_their_output() -> None:
    """The first task thread installs output capture and the tqdm bridge."""
    probe = (
        "import os, sys, tempfile, tqdm.std\n"
        "os.environ['RAYTHA_NB_DB'] = os.path.join(tempfile.mkdtemp(), 't.duckdb')\n"
        "import raytha_nb as rnb\n"
        "from raytha_nb.context import TaskOutput\n"
        "rnb.wait(rnb.enqueue(lambda: None), 30)\n"
        "print(isinstance(sys.stdout, TaskOutput), "
        "getattr(tqdm.std.tqdm.__init__, '_raytha_nb', False))"
    )
    assert _run(probe) == "True True"
