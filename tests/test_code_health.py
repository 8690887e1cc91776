"""The code's own rules, checked by CI: formatting, lint (complexity cap included), types, and the rooms of
docs/architecture.md (what each package may import), read from the source with ``ast``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PROJECT = ("market", "connectors", "flows", "sql", "dashboards", "configs", "app")
"""The rooms (top-level packages) of the project."""

MAY_IMPORT: dict[str, set[str]] = {
    "market": {"market"},
    "configs": {"configs", "market"},
    "sql": {"sql", "configs"},
    "connectors": {"connectors", "market", "sql", "configs"},
    "flows": {"flows", "connectors", "market", "configs", "sql"},
    "dashboards": {"dashboards", "market", "sql", "configs", "connectors"},
    "app": set(PROJECT),
}
"""Which rooms each room may import (docs/architecture.md)."""

THIRD_PARTY_BANNED: dict[str, set[str]] = {
    "market": {"bytewax", "psycopg", "redis", "panel", "bokeh", "sqlalchemy", "websockets", "pandas"},
    "sql": {"bytewax", "redis", "panel"},
    "dashboards": {"bytewax", "websockets"},
    "configs": {"bytewax", "panel", "sqlalchemy"},
}
"""Libraries a room must not import (the pure core has no I/O; the dashboard never loads the engine)."""


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, at any depth (lazy imports included), except
    the allowed upward imports: a flow module's ``__getattr__`` handing its ``flow`` to
    ``app.entrypoints``, and a module's ``if __name__ == "__main__":`` block handing its command to
    ``app`` (``python -m flows.backtest`` runs ``app.backtest``; app/__init__.py). Neither runs on import."""
    tree = ast.parse(path.read_text(), str(path))
    allowed = {
        id(node)
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef) and function.name == "__getattr__"
        for node in ast.walk(function)
        if isinstance(node, ast.ImportFrom) and node.module == "app.entrypoints"
    }
    allowed |= {
        id(node)
        for block in tree.body
        if isinstance(block, ast.If) and ast.unparse(block.test) == "__name__ == '__main__'"
        for node in ast.walk(block)
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "app"
    }
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and id(node) not in allowed:
            names.add(node.module.split(".")[0])
    return names


def room_files() -> list[tuple[str, Path]]:
    return [
        (room, path)
        for room in PROJECT
        if (REPO_ROOT / room).is_dir()
        for path in sorted((REPO_ROOT / room).rglob("*.py"))
    ]


@pytest.mark.parametrize("room", PROJECT)
def test_each_room_imports_only_what_it_may(room: str) -> None:
    wrong = []
    for file_room, path in room_files():
        if file_room != room:
            continue
        imported = imported_modules(path)
        rooms = {name for name in imported if name in PROJECT} - MAY_IMPORT[room]
        banned = imported & THIRD_PARTY_BANNED.get(room, set())
        if rooms or banned:
            wrong.append(f"{path.relative_to(REPO_ROOT)}: {sorted(rooms | banned)}")
    assert not wrong, "imports across the rooms' rules:\n" + "\n".join(wrong)


def test_the_room_check_sees_a_violation(tmp_path: Path) -> None:
    """The checker itself: a lazy import inside a function is found."""
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    import bytewax.dataflow\n    from flows.graph import x\n"
        "def __getattr__(name):\n    from app.entrypoints import flow\n    from app.stack import up\n"
    )
    assert imported_modules(module) == {"bytewax", "flows", "app"}


def test_a_main_block_may_hand_over_to_app_and_nothing_else_may(tmp_path: Path) -> None:
    """The second allowed upward import: ``from app... import`` in the module's ``__main__`` block only."""
    module = tmp_path / "m.py"
    module.write_text(
        "if __name__ == '__main__':\n    from app.backtest import main\n    import app.stack\n"
        "if __name__ != '__main__':\n    from app.services import x\n"
        "def f():\n    if __name__ == '__main__':\n        from app.status import y\n"
    )
    assert imported_modules(module) == {"app"}  # import app.stack, the wrong test, the nested block
    module.write_text("if __name__ == '__main__':\n    from app.backtest import main\n")
    assert imported_modules(module) == set()


def test_the_dashboard_loads_without_the_stream_engine() -> None:
    """Importing the dashboard's modules (its Redis reader included) never loads bytewax."""
    code = (
        "import sys, importlib, pkgutil, dashboards\n"
        "for m in pkgutil.iter_modules(dashboards.__path__):\n"
        "    if m.name != 'app': importlib.import_module('dashboards.' + m.name)\n"
        "print('bytewax' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"


def tool(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=REPO_ROOT, capture_output=True, text=True)


def test_ruff_lint_passes() -> None:
    """ruff with the project's rules (pyproject.toml), the complexity cap of 12 and stale noqa included."""
    run = tool("ruff", "check", "--no-cache", ".")
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_tree_is_formatted() -> None:
    run = tool("ruff", "format", "--check", "--no-cache", ".")
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.slow
def test_mypy_passes() -> None:
    """mypy over every package of the product (pyproject.toml), the dashboard included."""
    run = tool("mypy", "--no-incremental")
    assert run.returncode == 0, run.stdout + run.stderr
