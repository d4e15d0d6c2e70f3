"""Which optional part of the package a command needs, and one line when it is missing.

``pip install computalot`` is the SDK and the user commands only; the platform (``up``,
``serve``, ``admin``) needs ``pip install 'computalot[server]'`` (README, docs/operating.md).
What the extra holds is read from the installed package's own metadata, so this list cannot
drift from ``pyproject.toml``; a checkout run without an install falls back to trying the
platform's first imports.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re

import typer
from rich.console import Console
from rich.markup import escape

SERVER_EXTRA = "server"
#: Top-level modules the platform imports first: the fallback when there is no metadata.
SERVER_MODULES = ("ray", "fastapi", "sqlalchemy", "pydantic_settings")
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def extra_requirements(extra: str, distribution: str = "computalot") -> list[str] | None:
    """Distribution names that ``distribution[extra]`` adds, or ``None`` when it is not
    installed (a bare checkout on ``sys.path``)."""
    try:
        requires = importlib.metadata.requires(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    names = []
    for requirement in requires or []:
        requirement_text, _, marker = requirement.partition(";")
        found = _EXTRA_MARKER.search(marker)
        match = _NAME.match(requirement_text.strip())
        if found and found.group(1) == extra and match and match.group(0) != distribution:
            names.append(match.group(0))
    return names


def _installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def missing_for_extra(extra: str = SERVER_EXTRA) -> list[str]:
    """What of ``computalot[extra]`` is not installed here (empty when all of it is)."""
    names = extra_requirements(extra)
    if names is None:
        return [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
    return [name for name in names if not _installed(name)]


def extra_line(extra: str, missing: list[str]) -> str:
    """The one line a command prints when ``missing`` parts of ``extra`` are not installed."""
    shown = ", ".join(missing[:6]) + (", …" if len(missing) > 6 else "")
    return (
        f"the platform needs the {extra} extra: pip install 'computalot[{extra}]' "
        f"(missing: {shown})"
    )


def require_server_extra() -> None:
    """Exit 2 with :func:`extra_line` when the platform's dependencies are not installed."""
    missing = missing_for_extra(SERVER_EXTRA)
    if missing:
        Console(stderr=True).print(
            f"[red]error:[/red] {escape(extra_line(SERVER_EXTRA, missing))}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
