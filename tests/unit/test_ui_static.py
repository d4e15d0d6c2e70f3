"""The live job page's files and their route, without Ray (docs/llms-full.md, "Live job page").

The browser tests (tests/integration/test_live_page.py) need Chromium; these checks run
everywhere: the files the page loads are all served, with their types and a CSP that a file
cannot break (no inline script or style, no outside origin), and unknown files are envelopes.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from computalot.settings import Settings
from serve_app.app import create_app
from serve_app.routes.ui import CSP, FILES, STATIC_DIR


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    return create_app(Settings(data_dir=tmp_path_factory.mktemp("ui-data")))


async def get(app: FastAPI, path: str, **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ui.test") as client:
        return await client.get(path, headers=headers)


def referenced_files() -> set[str]:
    """What index.html links and every module imports (relative to the folder)."""
    names = set(
        re.findall(
            r'(?:src|href)="([\w.-]+\.(?:js|css|svg))"', (STATIC_DIR / "index.html").read_text()
        )
    )
    for script in STATIC_DIR.glob("*.js"):
        names |= {
            m.removeprefix("./") for m in re.findall(r'from "(\./[\w.-]+)"', script.read_text())
        }
    return names


def test_every_file_the_page_loads_is_served_and_nothing_comes_from_elsewhere() -> None:
    wanted = referenced_files()
    assert {"app.js", "style.css", "api.js", "jobview.js", "packing.js"} <= wanted
    assert wanted <= set(FILES), wanted - set(FILES)
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), (
            f"{path.name} loads from elsewhere"
        )
        assert ".innerHTML" not in text and "eval(" not in text, path.name
    index = (STATIC_DIR / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", index), "inline script: CSP refuses it"
    assert " style=" not in index and "<style" not in index, "inline style: CSP refuses it"


def test_the_key_is_kept_in_the_tab_and_sent_only_as_a_header() -> None:
    api = (STATIC_DIR / "api.js").read_text()
    assert 'Authorization: "Bearer " + key' in api
    assert "sessionStorage" in api and "localStorage" not in api
    for path in STATIC_DIR.glob("*.js"):
        text = path.read_text()
        assert not re.search(r"console\.\w+\(", text), f"{path.name} writes to the console"
        assert not re.search(r"searchParams\.set\([^)]*key", text, re.I), path.name


async def test_types_headers_conditional_requests_and_redirect(app: FastAPI) -> None:
    index = await get(app, "/ui/")
    assert index.status_code == 200
    assert index.headers["content-type"] == "text/html; charset=utf-8"
    assert index.headers["content-security-policy"] == CSP
    assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP
    assert index.headers["x-frame-options"] == "DENY"
    assert index.headers["cache-control"] == "no-cache"
    for name, kind in [
        ("app.js", "text/javascript"),
        ("style.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ]:
        answer = await get(app, f"/ui/{name}")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind)
        assert answer.content == (STATIC_DIR / name).read_bytes()
        again = await get(app, f"/ui/{name}", **{"If-None-Match": answer.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
    moved = await get(app, "/ui")
    assert moved.status_code == 308 and moved.headers["location"] == "/ui/"


@pytest.mark.parametrize(
    "path", ["/ui/nope.js", "/ui/static/app.js", "/ui/..%2fapp.py", "/ui/index.htm"]
)
async def test_unknown_files_are_404_envelopes(app: FastAPI, path: str) -> None:
    answer = await get(app, path)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_the_files_are_read_from_the_package() -> None:
    assert Path(STATIC_DIR).parts[-3:] == ("serve_app", "ui", "static")
    assert set(FILES) == {
        p.name for p in STATIC_DIR.iterdir() if p.suffix in {".html", ".js", ".css", ".svg"}
    }
