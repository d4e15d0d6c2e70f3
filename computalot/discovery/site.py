"""The discovery surface: the Markdown under ``docs/``, served as text, JSON and HTML.

Every discovery route reads the same files, so ``/llms.txt``, ``/docs`` and ``/api/v1/docs`` cannot
tell different stories. The Endpoint Reference tables of ``llms.txt`` are parsed back
(:func:`endpoint_reference`) and compared with the routes of the app (:func:`app_routes`), so a
route that is added without being documented fails a test instead of drifting silently.

Docs are written with the placeholder ``{base_url}``; :func:`page_text` swaps in the URL the
caller reached the API at, so copied curl lines work as they are.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from computalot.discovery.render import render_page
from computalot.errors import ComputalotError

DOCS_DIR_ENV = "COMPUTALOT_DOCS_DIR"
PLACEHOLDER = "{base_url}"
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
OPENAPI_PATH = "/openapi.json"


@dataclass(frozen=True)
class Page:
    """One document: its source file, where it is served, and in which format."""

    name: str
    filename: str
    path: str
    format: str
    title: str
    description: str


PAGES: dict[str, Page] = {
    p.name: p
    for p in (
        Page(
            "skill",
            "skill.md",
            "/skill.md",
            "markdown",
            "Skill",
            "Agent skill file: what Computalot is, auth, quickstarts, where to look next",
        ),
        Page(
            "llms",
            "llms.txt",
            "/llms.txt",
            "text",
            "Compact reference",
            "Compact reference with the full endpoint table",
        ),
        Page(
            "llms-full",
            "llms-full.md",
            "/llms-full.txt",
            "text",
            "Full reference",
            "Full reference with tutorials; rendered as HTML at /docs",
        ),
        Page(
            "recipes",
            "recipes.md",
            "/api/v1/docs/recipes",
            "markdown",
            "Recipes",
            "Sealed recipes: catalog, payloads, operations and results",
        ),
        Page(
            "python-sdk",
            "python-sdk.md",
            "/api/v1/docs/python-sdk",
            "markdown",
            "Python SDK",
            "ComputalotClient and AsyncComputalotClient usage",
        ),
        Page(
            "workflows",
            "workflows.md",
            "/api/v1/docs/workflows",
            "markdown",
            "Workflows",
            "sweep, map_reduce and benchmark jobs, fan-out and merge, chaining, callbacks, "
            "retries, watching, idempotent submits",
        ),
    )
}
GUIDES = ("recipes", "python-sdk", "workflows")
"""Pages served as ``/api/v1/docs/<name>`` (JSON by default)."""

_BASE_URL_RE = re.compile(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~\-/]*)?")
_COLON_PARAM = re.compile(r"(?<=/):[A-Za-z_][A-Za-z0-9_]*")
_BRACE_PARAM = re.compile(r"\{[^}/]+\}")


#: Where an installed wheel keeps the pages: the build copies ``docs/`` here (``setup.py``).
PACKAGED_DOCS = Path(__file__).resolve().parent / "pages"
#: A source checkout (and its editable install): the repository's own ``docs/``.
CHECKOUT_DOCS = Path(__file__).resolve().parents[2] / "docs"


def find_docs_dir(*candidates: Path) -> Path:
    """The first of ``candidates`` that holds the pages (``llms.txt`` marks one), else the last:
    a missing page then names the file it looked for."""
    for candidate in candidates:
        if (candidate / PAGES["llms"].filename).is_file():
            return candidate
    return candidates[-1]


def docs_dir() -> Path:
    """``$COMPUTALOT_DOCS_DIR``, else the pages packaged in the wheel, else the checkout's
    ``docs/`` (docs/operating.md)."""
    override = os.environ.get(DOCS_DIR_ENV)
    return Path(override) if override else find_docs_dir(PACKAGED_DOCS, CHECKOUT_DOCS)


@functools.lru_cache(maxsize=32)
def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ComputalotError(
            f"documentation file {Path(path).name} is missing on this server",
            recommended_action=f"the operator should set {DOCS_DIR_ENV} to the docs directory",
        ) from exc


def clear_cache() -> None:
    """Forget cached files and renderings (tests, or after editing docs on a running server)."""
    _read.cache_clear()
    _render_cached.cache_clear()


def safe_base_url(candidate: str, fallback: str = "http://127.0.0.1:8000") -> str:
    """``candidate`` without a trailing slash, if it is a plain http(s) URL; else ``fallback``.

    The base URL comes from the Host header, which the client controls; it lands in HTML, so
    anything beyond host, port and a simple path is refused rather than escaped.
    """
    url = candidate.rstrip("/")
    return url if _BASE_URL_RE.fullmatch(url) else fallback.rstrip("/")


def page_text(name: str, base_url: str) -> str:
    """The Markdown (or text) of a page with ``{base_url}`` replaced."""
    page = PAGES[name]
    return _read(str(docs_dir() / page.filename)).replace(PLACEHOLDER, base_url)


def nav_links() -> list[tuple[str, str]]:
    """(href, label) of every discovery page, relative to the site root."""
    links = [("/docs", "Full reference")]
    links += [(p.path, p.title) for p in PAGES.values() if p.name != "llms-full"]
    links += [("/llms-full.txt", "llms-full.txt"), ("/api/v1/docs", "JSON index")]
    return [*links, (OPENAPI_PATH, "OpenAPI")]


def render_html(name: str, base_url: str) -> str:
    """A self-contained HTML page for ``name`` (cached per page and base URL)."""
    return _render_cached(name, base_url, str(docs_dir()))


@functools.lru_cache(maxsize=64)
def _render_cached(name: str, base_url: str, _dir: str) -> str:
    return render_page(page_text(name, base_url), nav_links(), PAGES[name].title)


def parse_endpoint_tables(text: str) -> list[dict[str, str]]:
    """Rows ``{"group", "method", "path", "purpose"}`` of every ``| Method | Path | ... |`` table.

    ``group`` is the nearest heading above the table; a path keeps its ``:param`` spelling and
    loses any query string.
    """
    rows: list[dict[str, str]] = []
    group = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            group = stripped.lstrip("#").strip()
            continue
        if not stripped.startswith("|"):
            continue
        cells = [c.strip().strip("`").strip() for c in stripped.strip("|").split("|")]
        if len(cells) < 2 or cells[0].upper() not in METHODS or not cells[1].startswith("/"):
            continue
        purpose = cells[2] if len(cells) > 2 else ""
        path = cells[1].split("?", 1)[0]
        rows.append({"group": group, "method": cells[0].upper(), "path": path, "purpose": purpose})
    return rows


def normalize_path(path: str) -> str:
    """``/jobs/:id`` and ``/jobs/{job_id}`` both become ``/jobs/{}`` so docs and routes compare."""
    return _BRACE_PARAM.sub("{}", _COLON_PARAM.sub("{}", path))


def endpoint_reference(text: str) -> set[tuple[str, str]]:
    """(method, normalised path) of every row of the Endpoint Reference tables in ``text``."""
    return {(r["method"], normalize_path(r["path"])) for r in parse_endpoint_tables(text)}


def app_routes(app: Any) -> set[tuple[str, str]]:
    """(method, normalised path) of every APIRoute of a FastAPI app, HEAD/OPTIONS left out.

    FastAPI's own schema route is not an APIRoute but is part of the public surface (and is in
    the reference), so it is included when the app serves it. Mounts are not walked.
    """
    from fastapi import routing

    # Newer FastAPI keeps included routers nested; iter_route_contexts flattens them with their
    # prefixes. Older releases flatten on include, so the plain list is already complete.
    walk = getattr(routing, "iter_route_contexts", None)
    found: set[tuple[str, str]] = set()
    for route in walk(app.routes) if walk else app.routes:
        if isinstance(getattr(route, "original_route", route), routing.APIRoute):
            for method in set(route.methods or ()) - {"HEAD", "OPTIONS"}:
                found.add((method, normalize_path(route.path)))
    if getattr(app, "openapi_url", None):
        found.add(("GET", normalize_path(app.openapi_url)))
    return found


def _is_public(row: dict[str, str]) -> bool:
    return row["group"].lower().startswith("public") or "no auth" in row["purpose"].lower()


def docs_index(base_url: str, openapi_paths_count: int) -> dict[str, Any]:
    """The JSON body of ``GET /api/v1/docs``: where every document is and what needs auth."""
    rows = parse_endpoint_tables(page_text("llms", base_url))
    docs = [
        {"name": p.name, "url": base_url + p.path, "format": p.format, "description": p.description}
        for p in PAGES.values()
    ]
    docs.insert(
        3,
        {
            "name": "docs",
            "url": base_url + "/docs",
            "format": "html",
            "description": "Human-readable docs (the full reference, rendered)",
        },
    )
    return {
        "name": "Computalot",
        "base_url": base_url,
        "docs": docs,
        "openapi": {
            "url": base_url + OPENAPI_PATH,
            "path": OPENAPI_PATH,
            "paths": openapi_paths_count,
        },
        "auth": {
            "header": "Authorization: Bearer <token>",
            "tokens": {
                "flk_": "API key, admin-issued during the beta",
                "fls_": "wallet session (24 h) from the wallet sign-in flow",
            },
            "wallet_sign_in": [
                "POST /api/v1/auth/wallet/challenge",
                "POST /api/v1/auth/wallet/verify",
            ],
            "registration": "closed during the beta: POST /api/v1/auth/register answers 403",
        },
        "feedback": {
            "method": "POST",
            "path": "/api/v1/feedback",
            "auth": False,
            "types": ["bug", "feature_request", "provisioning", "job_type_request"],
        },
        "public_routes": [f"{r['method']} {r['path']}" for r in rows if _is_public(r)],
        "endpoints": rows,
    }
