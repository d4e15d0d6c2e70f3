"""``computalot login`` / ``logout``: the URL and token kept in the user's config directory
(docs/python-sdk.md, "CLI").

The file is ``$XDG_CONFIG_HOME/computalot/credentials`` (``~/.config/computalot/credentials``
without it), JSON ``{"url", "token"}``, mode 0600 in a 0700 directory. Every user command
takes its URL and token from ``--url`` / ``--token`` first, then ``COMPUTALOT_URL`` /
``COMPUTALOT_TOKEN``, then this file; the stored token is only sent to the stored URL.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from computalot.private_files import make_private_dirs, write_private
from computalot.sdk.base import DEFAULT_URL

DIR_MODE = 0o700


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or ""
    root = Path(base) if os.path.isabs(base) else Path.home() / ".config"
    return root / "computalot"


def credentials_path() -> Path:
    return config_dir() / "credentials"


@dataclass(frozen=True)
class Stored:
    url: str | None
    token: str | None


def load() -> Stored:
    """The stored login (both None when there is none or it cannot be read)."""
    try:
        data = json.loads(credentials_path().read_text())
    except (OSError, ValueError):
        return Stored(None, None)
    if not isinstance(data, dict):
        return Stored(None, None)
    url, token = data.get("url"), data.get("token")
    return Stored(
        url.rstrip("/") if isinstance(url, str) and url else None,
        token if isinstance(token, str) and token else None,
    )


def save(url: str, token: str) -> Path:
    """Write the login, 0600 in a 0700 directory; returns the file's path."""
    folder = make_private_dirs(config_dir())
    folder.chmod(DIR_MODE)
    path = credentials_path()
    write_private(path, (json.dumps({"url": url, "token": token}, indent=2) + "\n").encode())
    return path


def forget() -> bool:
    """Remove the stored login; False when there was none."""
    try:
        credentials_path().unlink()
    except FileNotFoundError:
        return False
    return True


def resolve(url: str | None, token: str | None) -> tuple[str, str | None]:
    """(URL, token) for a command: flags and environment (typer merged them) first, then the
    stored login, then the local default. The stored token goes to the stored URL only."""
    stored = load()
    chosen = (url or stored.url or DEFAULT_URL).rstrip("/")
    if token is None and stored.token and chosen == (stored.url or DEFAULT_URL):
        token = stored.token
    return chosen, token


LoginUrl = Annotated[
    str | None, typer.Option("--url", envvar="COMPUTALOT_URL", help="API root URL to keep.")
]
LoginToken = Annotated[
    str | None,
    typer.Option("--token", envvar="COMPUTALOT_TOKEN", help="API key (flk_…) to keep."),
]
