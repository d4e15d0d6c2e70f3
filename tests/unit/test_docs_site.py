"""The discovery surface: docs load, render, substitute the base URL, and match the routes."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient

from computalot.discovery import render as docs_render
from computalot.discovery import site as docs_site
from serve_app.routes import account, admin, auth, docs, feedback, ops

BASE = "https://compute.example.org"

# The routes this release serves; later releases extend llms.txt and this list.
SERVED = """
GET /health | GET /live | GET /ready | GET /metrics | GET /skill.md | GET /llms.txt
GET /llms-full.txt | GET /docs | GET /openapi.json | GET /api/v1/docs | GET /api/v1/docs/recipes
GET /api/v1/docs/python-sdk | GET /api/v1/docs/workflows | POST /api/v1/feedback
POST /api/v1/auth/wallet/challenge | POST /api/v1/auth/wallet/verify | POST /api/v1/auth/register
GET /api/v1/account | POST /api/v1/account/callback_secret/rotate
GET /api/v1/admin/accounts | POST /api/v1/admin/accounts
GET /api/v1/admin/accounts/:id/keys | POST /api/v1/admin/accounts/:id/keys
POST /api/v1/admin/keys/:id/revoke | POST /api/v1/admin/wallets
POST /api/v1/admin/accounts/:id/grants | GET /api/v1/admin/feedback
POST /api/v1/projects | GET /api/v1/projects | GET /api/v1/projects/:name
PUT /api/v1/projects/:name | DELETE /api/v1/projects/:name | POST /api/v1/projects/:name/push
GET /api/v1/projects/:name/status | GET /api/v1/projects/:name/status/details
POST /api/v1/projects/:name/invalidate | GET /api/v1/projects/:name/stream
PUT /api/v1/projects/:name/kv/:key | GET /api/v1/projects/:name/kv/:key
DELETE /api/v1/projects/:name/kv/:key | GET /api/v1/projects/:name/kv
POST /api/v1/jobs | POST /api/v1/jobs/batch | GET /api/v1/jobs | GET /api/v1/jobs/watch
GET /api/v1/jobs/:id | GET /api/v1/jobs/:id/tasks | GET /api/v1/jobs/:id/output
GET /api/v1/jobs/:id/events | GET /api/v1/jobs/:id/stream | PUT /api/v1/jobs/:id/cancel
GET /api/v1/presets | GET /api/v1/results/:job_id
GET /api/v1/account/balance | GET /api/v1/account/holds | GET /api/v1/account/ledger
GET /api/v1/account/quotes | POST /api/v1/account/quotes/topup
POST /api/v1/account/quotes/:id/pay/x402 | POST /api/v1/projects/:name/init
POST /api/v1/artifacts | POST /api/v1/artifacts/direct | PUT /api/v1/artifacts/direct/:token
POST /api/v1/artifacts/direct/:id/complete | POST /api/v1/artifacts/multipart
PUT /api/v1/artifacts/multipart/:id/parts/:n | GET /api/v1/artifacts/multipart/:id
POST /api/v1/artifacts/multipart/complete | GET /api/v1/artifacts | GET /api/v1/artifacts/:id
GET /api/v1/artifacts/:id/meta | DELETE /api/v1/artifacts/:id
GET /api/v1/recipes | GET /api/v1/recipes/:name | POST /api/v1/recipes/:name/jobs
"""


def _served() -> set[tuple[str, str]]:
    pairs = [item.split() for line in SERVED.strip().splitlines() for item in line.split("|")]
    return {(m, docs_site.normalize_path(p)) for m, p in pairs}


@pytest.fixture(autouse=True)
def _fresh_cache():
    docs_site.clear_cache()
    yield
    docs_site.clear_cache()


def _app(public_url: str | None = None) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None)
    app.state.settings = SimpleNamespace(
        public_url=public_url, resolved_public_url="http://127.0.0.1:8000"
    )
    app.include_router(docs.router)
    return app


def test_every_page_exists_is_substantial_and_fully_substituted():
    for name in docs_site.PAGES:
        raw = (docs_site.docs_dir() / docs_site.PAGES[name].filename).read_text()
        assert len(raw) > 1500, name
        text = docs_site.page_text(name, BASE)
        assert "{base_url}" not in text and BASE in text, name
        assert "dev.computalot.com" not in text, name


def test_llms_endpoint_reference_lists_exactly_the_served_routes():
    documented = docs_site.endpoint_reference(docs_site.page_text("llms", BASE))
    assert documented == _served()


def test_endpoint_reference_parser():
    text = """
# Jobs
| Method | Path | Purpose |
|---|---|---|
| GET | `/api/v1/jobs?status=&limit=50` | List |
| put | /api/v1/jobs/:id/cancel | Cancel |
| Field | /not/a/route | ignored: first cell is no method |
| GET | not-a-path | ignored |
"""
    assert docs_site.endpoint_reference(text) == {
        ("GET", "/api/v1/jobs"),
        ("PUT", "/api/v1/jobs/{}/cancel"),
    }
    rows = docs_site.parse_endpoint_tables(text)
    assert rows[0] == {"group": "Jobs", "method": "GET", "path": "/api/v1/jobs", "purpose": "List"}


def test_normalize_path_makes_colon_and_brace_params_equal():
    assert docs_site.normalize_path("/a/:job_id/b/:n") == "/a/{}/b/{}"
    assert docs_site.normalize_path("/a/{job_id}/b/{n:path}") == "/a/{}/b/{}"
    assert docs_site.normalize_path("/skill.md") == "/skill.md"


def test_app_routes_walks_api_routes_only():
    router = APIRouter()

    @router.get("/things/{thing_id}")
    def get_thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @router.api_route("/things", methods=["POST", "HEAD", "OPTIONS"])
    def make_thing() -> dict[str, str]:
        return {}

    app = FastAPI(docs_url=None, redoc_url=None)
    app.include_router(router)
    assert docs_site.app_routes(app) == {
        ("GET", "/things/{}"),
        ("POST", "/things"),
        ("GET", "/openapi.json"),
    }
    documented = docs_site.endpoint_reference(
        "| GET | /things/:id | x |\n| POST | /things | y |\n| GET | /openapi.json | z |"
    )
    assert docs_site.app_routes(app) - documented == set()
    assert ("GET", "/openapi.json") not in docs_site.app_routes(FastAPI(openapi_url=None))


def test_routers_present_today_are_all_documented():
    app = FastAPI(docs_url=None, redoc_url=None)
    for module in (ops, docs, auth, account, admin, feedback):
        app.include_router(module.router)
    documented = docs_site.endpoint_reference(docs_site.page_text("llms", BASE))
    assert docs_site.app_routes(app) - documented == set()


def test_render_html_has_nav_toc_code_and_tables():
    page = docs_site.render_html("llms-full", BASE)
    assert page.startswith("<!doctype html>") and "<style>" in page
    for href, _label in docs_site.nav_links():
        assert f'href="{href}"' in page
    assert '<pre><code class="language-json">' in page and "<table>" in page
    assert "<title>Computalot — full reference · Computalot</title>" in page
    assert '<li class="l2"><a href="#runner-protocol">' in page
    ids = set(re.findall(r'id="([^"]+)"', page))
    anchors = set(re.findall(r'href="#([^"]+)"', page))
    assert anchors <= ids
    assert f"{BASE}/api/v1/jobs" in page


def test_render_markdown_slugs_are_unique_and_html_is_inert():
    body, toc, title = docs_render.render_markdown("# T\n## A b\n### A b\n<script>x</script>\n")
    assert title == "T"
    assert [(lvl, anchor) for lvl, anchor, _ in toc] == [(2, "a-b"), (3, "a-b-2")]
    assert "<script>" not in body
    body, toc, title = docs_render.render_markdown("---\nname: x\n---\n# Skill\n## Use\n")
    assert title == "Skill" and toc == [(2, "use", "Use")] and "name: x" not in body


def test_skill_anchor_into_docs_exists():
    skill = docs_site.page_text("skill", BASE)
    page = docs_site.render_html("llms-full", BASE)
    for anchor in re.findall(re.escape(BASE) + r"/docs#([a-z0-9-]+)", skill):
        assert f'id="{anchor}"' in page


def test_docs_index_shape():
    index = docs_site.docs_index(BASE, 42)
    assert index["name"] == "Computalot"
    assert index["openapi"] == {"url": f"{BASE}/openapi.json", "path": "/openapi.json", "paths": 42}
    names = {d["name"] for d in index["docs"]}
    assert names == {"skill", "llms", "llms-full", "docs", "recipes", "python-sdk", "workflows"}
    assert all(d["url"].startswith(BASE + "/") and d["description"] for d in index["docs"])
    public = set(index["public_routes"])
    assert {"GET /health", "GET /llms.txt", "POST /api/v1/auth/wallet/verify"} <= public
    assert "POST /api/v1/feedback" in public and "GET /metrics" not in public
    assert not any("/admin/" in r or "/jobs" in r for r in public)
    assert len(index["endpoints"]) == len(_served())


def test_text_routes_substitute_the_request_base_url():
    client = TestClient(_app())
    skill = client.get("/skill.md")
    assert skill.status_code == 200
    assert skill.headers["content-type"] == "text/markdown; charset=utf-8"
    assert "http://testserver/api/v1/projects" in skill.text
    llms = client.get("/llms.txt")
    assert llms.headers["content-type"].startswith("text/plain")
    assert "Base URL: http://testserver" in llms.text
    full = client.get("/llms-full.txt")
    assert (
        full.headers["content-type"].startswith("text/plain") and "## Runner protocol" in full.text
    )
    html = client.get("/docs")
    assert html.headers["content-type"].startswith("text/html")
    assert "http://testserver/api/v1/jobs" in html.text


def test_public_url_setting_wins_and_bad_hosts_fall_back():
    client = TestClient(_app(public_url="https://api.example.net/"))
    assert "Base URL: https://api.example.net\n" in client.get("/llms.txt").text
    scope = {"type": "http", "app": _app(), "scheme": "http", "path": "/docs", "query_string": b"",
             "headers": [(b"host", b'x"><script>a</script>')], "server": ("h", 80)}  # fmt: skip
    assert docs.base_url(Request(scope)) in ("http://h", "http://127.0.0.1:8000")


def test_guides_are_json_by_default_markdown_or_html_on_request():
    client = TestClient(_app())
    for name in docs_site.GUIDES:
        body = client.get(f"/api/v1/docs/{name}").json()
        assert body["name"] == name and body["format"] == "markdown"
        assert body["content"].startswith("# ") and "{base_url}" not in body["content"]
        md = client.get(f"/api/v1/docs/{name}", headers={"accept": "text/markdown"})
        assert md.headers["content-type"] == "text/markdown; charset=utf-8"
        assert md.text == body["content"]
        page = client.get(f"/api/v1/docs/{name}", headers={"accept": "text/html,*/*;q=0.8"})
        assert page.headers["content-type"].startswith("text/html")


def test_json_index_route_counts_openapi_paths():
    client = TestClient(_app())
    index = client.get("/api/v1/docs").json()
    assert index["openapi"]["paths"] == len(client.get("/openapi.json").json()["paths"]) > 0
    assert index["base_url"] == "http://testserver"


def test_docs_dir_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for page in docs_site.PAGES.values():
        (tmp_path / page.filename).write_text(f"# {page.name}\n\nat {{base_url}}\n")
    monkeypatch.setenv(docs_site.DOCS_DIR_ENV, str(tmp_path))
    assert docs_site.page_text("workflows", BASE) == f"# workflows\n\nat {BASE}\n"
    assert '<h1 id="skill">skill</h1>' in docs_site.render_html("skill", BASE)
    (tmp_path / "skill.md").unlink()
    docs_site.clear_cache()
    response = TestClient(_app(), raise_server_exceptions=False).get("/skill.md")
    assert response.status_code == 500


def test_safe_base_url():
    assert docs_site.safe_base_url("http://h:8000/") == "http://h:8000"
    assert docs_site.safe_base_url("https://h.example/api/") == "https://h.example/api"
    assert docs_site.safe_base_url("javascript:alert(1)", "http://f") == "http://f"
    assert docs_site.safe_base_url('http://x"><script>/', "http://f") == "http://f"
