"""The live job page at ``/ui/`` (docs/llms-full.md, "Live job page").

Plain HTML, JavaScript and SVG shipped as package data (``serve_app/ui/static``): no build step,
no CDN. The page signs in with an API key it keeps in the tab's ``sessionStorage`` and sends
only in the ``Authorization`` header, so the key is never in a URL or a server log line.

The files are read once, at import. Each answer carries a strict Content-Security-Policy
(scripts, styles and connections from this origin only, no inline script), an ``ETag`` that
``If-None-Match`` turns into a 304, and ``no-cache`` (the browser revalidates, so a deploy shows
at once). An unknown file is the usual 404 envelope.

These are pages, not API operations: they are plain Starlette routes, left out of the OpenAPI
document and of llms.txt's Endpoint Reference on purpose.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from computalot.errors import NotFound

STATIC_DIR = Path(__file__).resolve().parent.parent / "ui" / "static"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

#: Self only: no inline script or style, no framing, no plugins; fetch() to this origin only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


class StaticFile(NamedTuple):
    body: bytes
    content_type: str
    etag: str


def load_files(directory: Path = STATIC_DIR) -> dict[str, StaticFile]:
    """Every servable file of ``directory`` (flat: no sub-folders) by name."""
    files: dict[str, StaticFile] = {}
    for path in sorted(directory.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        files[path.name] = StaticFile(body, content_type, etag)
    return files


FILES = load_files()

router = APIRouter()


def _answer(request: Request, name: str) -> Response:
    found = FILES.get(name)
    if found is None:
        raise NotFound(
            f"no file {name!r} in the job page",
            recommended_action="open /ui/ (the page loads its own files)",
        )
    headers = {**SECURITY_HEADERS, "ETag": found.etag}
    if found.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else found.body
    response = Response(body, media_type=found.content_type, headers=headers)
    if request.method == "HEAD":
        response.headers["content-length"] = str(len(found.body))
    return response


async def ui_redirect(request: Request) -> Response:
    """``/ui`` -> ``/ui/``: the page's relative links resolve under the folder."""
    return RedirectResponse("/ui/", status_code=308, headers=SECURITY_HEADERS)


async def ui_index(request: Request) -> Response:
    return _answer(request, "index.html")


async def ui_file(request: Request) -> Response:
    return _answer(request, str(request.path_params["name"]))


router.add_route("/ui", ui_redirect, methods=["GET", "HEAD"], include_in_schema=False)
router.add_route("/ui/", ui_index, methods=["GET", "HEAD"], include_in_schema=False)
router.add_route("/ui/{name:path}", ui_file, methods=["GET", "HEAD"], include_in_schema=False)
