"""The store imports nothing above it: ids, cursors, states, errors, settings, time and the JSON
rules sit below it, and everything else (auth, jobs, engine, views, the API) sits above."""

from __future__ import annotations

import ast
from pathlib import Path

import computalot

ROOT = Path(computalot.__file__).resolve().parent
#: What the store may import of the platform (each imports no other platform module above it).
BELOW_THE_STORE = frozenset(
    {
        "computalot.store",
        "computalot.states",
        "computalot.ids",
        "computalot.cursors",
        "computalot.errors",
        "computalot.settings",
        "computalot.timeutil",
        "computalot.jsonsafe",  # the JSON rules the store's codec applies
        "computalot.private_files",  # owner-only modes for the SQLite files
    }
)


def platform_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a ``computalot`` or ``serve_app`` module in ``path``,
    wherever it is (inside functions and ``TYPE_CHECKING`` blocks too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return [
        (line, name) for line, name in found if name.split(".")[0] in {"computalot", "serve_app"}
    ]


def allowed(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in BELOW_THE_STORE)


def test_the_store_imports_nothing_above_it() -> None:
    files = sorted((ROOT / "store").rglob("*.py"))
    assert files
    above = [
        f"{path.relative_to(ROOT.parent)}:{line} imports {module}"
        for path in files
        for line, module in platform_imports(path)
        if not allowed(module)
    ]
    assert above == []


def test_the_layers_below_the_store_import_only_each_other() -> None:
    below = [m for m in BELOW_THE_STORE if m != "computalot.store"]
    above = []
    for module in below:
        path = ROOT / (module.removeprefix("computalot.") + ".py")
        above += [
            f"{module}:{line} imports {name}"
            for line, name in platform_imports(path)
            if not allowed(name) or name.startswith("computalot.store")
        ]
    assert above == []


def test_the_check_sees_an_import_from_above(tmp_path: Path) -> None:
    source = tmp_path / "bad.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from computalot.views import job_out\n"
        "def f():\n"
        "    import serve_app.app\n"
    )
    found = [name for _line, name in platform_imports(source) if not allowed(name)]
    assert found == ["computalot.views.job_out", "serve_app.app"]
