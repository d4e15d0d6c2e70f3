"""Every declared dependency is imported somewhere: none is declared "for later".

A dependency comes with the code that needs it. The distributions of ``pyproject.toml`` are
mapped to their import names with ``importlib.metadata.packages_distributions()`` and looked for
in the ``import`` statements (read with ``ast``) of the code that needs them: the platform and
the SDK for ``[project].dependencies`` and the ``server`` extra, the tests and benchmarks for
the ``dev`` extra.

The plain install (``pip install computalot``: the SDK and the ``computalot`` command, README)
is exactly what the SDK's and the CLI's import closure needs: the modules imported at import
time (not inside functions, not under ``TYPE_CHECKING``) from :data:`PLAIN_ROOTS` on, followed
through ``computalot`` itself. A real interpreter then imports them and must load no platform
library.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_SOURCES = ("computalot", "serve_app", "recipes")
DEV_SOURCES = ("tests", "bench")
SELF = "computalot"
#: What ``pip install computalot`` is for: the SDK, its public names, and the CLI.
PLAIN_ROOTS = (
    "computalot",
    "computalot.sdk.client",
    "computalot.callbacks.verify",
    "computalot.cli",
    "computalot.cli.__main__",
)
#: Libraries of the platform the plain install must never load.
PLATFORM_MODULES = ("ray", "numpy", "sqlalchemy", "pydantic", "fastapi", "asyncpg", "eth_account")

#: Dependencies used without an import statement of their own, each with why.
LOADED_WITHOUT_IMPORT = {
    "asyncpg": "SQLAlchemy loads it for a postgresql+asyncpg:// database URL",
    "pytest-asyncio": "a pytest plugin: runs the async tests (asyncio_mode = auto)",
    "pytest-timeout": "a pytest plugin: the timeout setting of [tool.pytest.ini_options]",
    "ruff": "a command-line tool (make lint)",
    "build": "a command-line tool (python -m build: tests/integration/test_wheel_install.py)",
    "mypy": "a command-line tool (make lint)",
}


def _normal(name: str) -> str:
    """A distribution name as PEP 503 compares them (``Markdown_It.py`` = ``markdown-it-py``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _distribution(requirement: str) -> str:
    """``"ray[default,serve]>=2.60"`` → ``"ray"``."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    assert match, requirement
    return _normal(match.group(0))


def _imported_modules(folders: tuple[str, ...]) -> set[str]:
    """Top-level names of every module imported by the Python files under ``folders``."""
    found: set[str] = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.add(node.module.split(".")[0])
    return found


def _unimported(requirements: list[str], folders: tuple[str, ...]) -> list[str]:
    provides: dict[str, set[str]] = {}
    for module, dists in packages_distributions().items():
        for dist in dists:
            provides.setdefault(_normal(dist), set()).add(module)
    imported = _imported_modules(folders)
    unused = []
    for requirement in requirements:
        dist = _distribution(requirement)
        if dist == SELF:  # dev = "computalot[server]" + its own: nothing to import
            continue
        modules = provides.get(dist)
        assert modules, f"{dist} is declared but not installed: install the project to test"
        if not modules & imported and dist not in LOADED_WITHOUT_IMPORT:
            unused.append(dist)
    return unused


def _project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        project: dict[str, object] = tomllib.load(fh)["project"]
    return project


def _extras() -> dict[str, list[str]]:
    extras = _project()["optional-dependencies"]
    assert isinstance(extras, dict)
    return extras


def test_every_runtime_dependency_is_imported_by_the_platform() -> None:
    requirements = _project()["dependencies"]
    assert isinstance(requirements, list)
    assert _unimported([*requirements, *_extras()["server"]], RUNTIME_SOURCES) == []


def _module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _import_time_imports(tree: ast.Module, package: str) -> set[str]:
    """Absolute names a module imports when it is imported: its body, into ``if``/``try``/
    ``with``/class bodies, never into functions or ``if TYPE_CHECKING:``."""
    found: set[str] = set()
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.If):
            test = ast.unparse(node.test)
            if test not in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                pending.extend(node.body)
            pending.extend(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                pending.extend(block)
            for handler in node.handlers:
                pending.extend(handler.body)
        elif isinstance(node, ast.With | ast.ClassDef):
            pending.extend(node.body)
    return found


def plain_closure() -> set[str]:
    """Top-level third-party modules imported, at import time, from :data:`PLAIN_ROOTS`."""
    seen: set[str] = set()
    third_party: set[str] = set()
    queue = list(PLAIN_ROOTS)
    while queue:
        module = queue.pop()
        parts = module.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
            name = ".".join(parts[:i])
            if name in seen:
                continue
            seen.add(name)
            if parts[0] != SELF:
                if parts[0] not in sys.stdlib_module_names:
                    third_party.add(parts[0])
                continue
            path = _module_file(name)
            if path is None:  # ``from computalot.x import some_function``
                continue
            package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            tree = ast.parse(path.read_text(), str(path))
            queue.extend(_import_time_imports(tree, package))
    return third_party


def test_the_plain_install_is_exactly_what_the_sdk_and_cli_import() -> None:
    provides = packages_distributions()
    needed = {_normal(dist) for module in plain_closure() for dist in provides.get(module, [])}
    declared = {_distribution(r) for r in _project()["dependencies"]}  # type: ignore[attr-defined]
    assert declared == needed
    assert not declared & {"ray", "numpy", "sqlalchemy", "asyncpg", "pydantic", "fastapi"}


def test_the_closure_follows_computalot_and_stops_at_functions() -> None:
    closure = plain_closure()
    assert {"httpx", "httpx_sse", "typer", "rich"} <= closure  # sdk.base, cli.main, cli.user
    assert not closure & set(PLATFORM_MODULES)  # `up` imports the platform inside the command


def test_a_real_import_of_the_sdk_and_cli_loads_no_platform_library() -> None:
    """The static closure checked by a real interpreter: ``computalot --help`` and the SDK."""
    code = (
        "import sys, computalot, computalot.cli, computalot.cli.user\n"
        "from computalot import ComputalotClient, AsyncComputalotClient\n"
        "from computalot import verify_callback_signature\n"
        f"print(sorted(m for m in {PLATFORM_MODULES!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_dev_brings_the_server_extra() -> None:
    assert "computalot[server]" in _extras()["dev"]


def test_every_dev_dependency_is_used_by_the_tests_or_benchmarks() -> None:
    assert _unimported(_extras()["dev"], DEV_SOURCES) == []


@pytest.mark.parametrize("name", sorted(LOADED_WITHOUT_IMPORT))
def test_the_allow_list_names_declared_dependencies(name: str) -> None:
    extras = _extras()
    declared = [*_project()["dependencies"], *extras["server"], *extras["dev"]]  # type: ignore[misc]
    assert name in {_distribution(r) for r in declared}
