"""Where the Ray dashboard is and how to get past its token prompt, for ``up`` and ``serve``.

Ray (2.60) turns token authentication on for every cluster ``ray.init`` starts, and for a
``ray start`` cluster when ``RAY_AUTH_MODE=token`` (cluster.yaml): the dashboard then greets
an operator with "Authentication Token Required". We print where the token is, never the
token itself: ``up``/``serve`` output ends up in service and CI logs, and the token lets its
holder run code on every node. That is Ray's own habit too: ``ray start`` and ``ray.init`` log
only that token auth is on; the token is printed only by an explicit ``ray get-auth-token``.
"""

from __future__ import annotations

import os
from pathlib import Path


def _token_source() -> str:
    """Where Ray reads this cluster's token from, in Ray's order."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "the RAY_AUTH_TOKEN variable"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return str(Path(path) if path else Path.home() / ".ray" / "auth_token")


def _token_auth_on() -> bool:
    try:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled

        return bool(is_token_auth_enabled())
    except ImportError:  # a Ray without token auth
        return os.environ.get("RAY_AUTH_MODE", "").lower() == "token"


def dashboard_url() -> str | None:
    """The connected cluster's dashboard URL, or None when it runs without one."""
    try:
        from ray._private.worker import get_dashboard_url

        url = str(get_dashboard_url() or "")
    except Exception:  # not connected, or this Ray has no dashboard
        return None
    if not url:
        return None
    return url if "://" in url else f"http://{url}"


def dashboard_line(url: str | None = None) -> str | None:
    """One line: the dashboard URL and, when Ray asks for one, where its token is."""
    url = url or dashboard_url()
    if url is None:
        return None
    if not _token_auth_on():
        return f"Ray dashboard: {url}"
    return (
        f"Ray dashboard: {url} (it asks for Ray's token: `ray get-auth-token` prints it; "
        f"it is kept in {_token_source()})"
    )
