"""Every declared dependency is imported somewhere: none is declared "for later".

A dependency comes with the code that needs it. The distributions of ``pyproject.toml`` are
mapped to their import names with ``importlib.metadata.packages_distributions()`` and looked for
in the ``import`` statements (read with ``ast``) of the code that needs them: the platform and
the SDK for ``[project].dependencies``, the tests and benchmarks for the ``dev`` extra.
"""

from __future__ import annotations

import ast
import re
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_SOURCES = ("computalot", "serve_app", "recipes")
DEV_SOURCES = ("tests", "bench")

#: Dependencies used without an import statement of their own, each with why.
LOADED_WITHOUT_IMPORT = {
    "asyncpg": "SQLAlchemy loads it for a postgresql+asyncpg:// database URL",
    "pytest-asyncio": "a pytest plugin: runs the async tests (asyncio_mode = auto)",
    "pytest-timeout": "a pytest plugin: the timeout setting of [tool.pytest.ini_options]",
    "ruff": "a command-line tool (make lint)",
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
        modules = provides.get(dist)
        assert modules, f"{dist} is declared but not installed: install the project to test"
        if not modules & imported and dist not in LOADED_WITHOUT_IMPORT:
            unused.append(dist)
    return unused


def _project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        project: dict[str, object] = tomllib.load(fh)["project"]
    return project


def test_every_runtime_dependency_is_imported_by_the_platform() -> None:
    requirements = _project()["dependencies"]
    assert isinstance(requirements, list)
    assert _unimported(requirements, RUNTIME_SOURCES) == []


def test_every_dev_dependency_is_used_by_the_tests_or_benchmarks() -> None:
    extras = _project()["optional-dependencies"]
    assert isinstance(extras, dict)
    assert _unimported(extras["dev"], DEV_SOURCES) == []


@pytest.mark.parametrize("name", sorted(LOADED_WITHOUT_IMPORT))
def test_the_allow_list_names_declared_dependencies(name: str) -> None:
    extras = _project()["optional-dependencies"]
    assert isinstance(extras, dict)
    declared = [*_project()["dependencies"], *extras["dev"]]  # type: ignore[misc]
    assert name in {_distribution(r) for r in declared}
