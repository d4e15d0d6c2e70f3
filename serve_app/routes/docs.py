"""Discovery routes (docs/llms.txt): public, rendered from ``docs/`` by :mod:`computalot.discovery.site`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse

from computalot.discovery import site as docs_site
from serve_app.strict_json import StrictJSONRoute

router = APIRouter(tags=["docs"], route_class=StrictJSONRoute)

MARKDOWN = "text/markdown; charset=utf-8"


def base_url(request: Request) -> str:
    """The configured public URL, else the URL this request reached us at (what curl used)."""
    settings = getattr(request.app.state, "settings", None)
    public_url = getattr(settings, "public_url", None)
    fallback = getattr(settings, "resolved_public_url", "http://127.0.0.1:8000")
    return docs_site.safe_base_url(public_url or str(request.base_url), fallback)


@router.get("/skill.md", response_class=Response)
async def skill(request: Request) -> Response:
    return Response(docs_site.page_text("skill", base_url(request)), media_type=MARKDOWN)


@router.get("/llms.txt", response_class=PlainTextResponse)
async def llms(request: Request) -> PlainTextResponse:
    return PlainTextResponse(docs_site.page_text("llms", base_url(request)))


@router.get("/llms-full.txt", response_class=PlainTextResponse)
async def llms_full(request: Request) -> PlainTextResponse:
    return PlainTextResponse(docs_site.page_text("llms-full", base_url(request)))


@router.get("/docs", response_class=HTMLResponse)
async def docs_html(request: Request) -> HTMLResponse:
    return HTMLResponse(docs_site.render_html("llms-full", base_url(request)))


@router.get("/api/v1/docs")
async def docs_index(request: Request) -> dict[str, Any]:
    paths = request.app.openapi().get("paths", {})  # FastAPI caches the schema after one build
    return docs_site.docs_index(base_url(request), len(paths))


def _guide(request: Request, name: str) -> Any:
    """JSON by default; Markdown or a rendered page when the client asks for one by ``Accept``.

    curl and SDKs send ``*/*`` and get JSON; browsers send ``text/html`` first and get a page.
    """
    url = base_url(request)
    accept = request.headers.get("accept", "")
    if "text/markdown" in accept:
        return Response(docs_site.page_text(name, url), media_type=MARKDOWN)
    if "text/html" in accept:
        return HTMLResponse(docs_site.render_html(name, url))
    return {"name": name, "format": "markdown", "content": docs_site.page_text(name, url)}


@router.get("/api/v1/docs/recipes", response_model=None)
async def docs_recipes(request: Request) -> Any:
    return _guide(request, "recipes")


@router.get("/api/v1/docs/python-sdk", response_model=None)
async def docs_python_sdk(request: Request) -> Any:
    return _guide(request, "python-sdk")


@router.get("/api/v1/docs/workflows", response_model=None)
async def docs_workflows(request: Request) -> Any:
    return _guide(request, "workflows")
