"""Ops routes, feedback and the discovery surface over real HTTP (docs/llms-full.md: "Metrics access", "Ops")."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx
import pytest

from computalot.discovery import site as docs_site
from computalot.settings import load_settings
from serve_app.app import create_app
from tests.support.helpers import assert_envelope

REMOTE = {"X-Forwarded-For": "203.0.113.5"}
FEEDBACK_TYPES = ("bug", "feature_request", "provisioning", "job_type_request")
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>.*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample of metric ``name`` in Prometheus text."""
    found = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match["name"] == name:
            found.append((dict(_LABEL.findall(match["labels"])), float(match["value"])))
    return found


def request_count(text: str, method: str, route: str, status: str) -> float:
    return sum(
        value
        for labels, value in samples(text, "computalot_http_requests_total")
        if labels == {"method": method, "route": route, "status": status}
    )


@pytest.fixture(scope="module")
def member(new_account: Any) -> httpx.Client:
    return new_account("member")


# ---- liveness, readiness, metrics -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/health", "/live"])
def test_health_and_live(anon: httpx.Client, path: str) -> None:
    answer = anon.get(path)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "ok"}


def test_ready_checks_store_and_engine(anon: httpx.Client) -> None:
    answer = anon.get("/ready")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "status": "ready",
        "checks": {"store": "ok", "dispatcher": "ok", "event_hub": "ok", "sandbox": "ok"},
        "warnings": [],
    }


def test_metrics_from_loopback_count_by_route_template(
    anon: httpx.Client, admin: httpx.Client, member: httpx.Client
) -> None:
    assert member.get("/api/v1/account").status_code == 200
    account_id = member.account["id"]
    assert admin.get(f"/api/v1/admin/accounts/{account_id}/keys").status_code == 200
    assert anon.get(f"/no/such/{uuid.uuid4().hex}").status_code == 404

    deadline = time.monotonic() + 30
    while True:
        answer = anon.get("/metrics")  # no token: the test client is on loopback
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/plain")
        text = answer.text
        seen = request_count(text, "GET", "/api/v1/account", "200")
        keys = request_count(text, "GET", "/api/v1/admin/accounts/{account_id}/keys", "200")
        unmatched = request_count(text, "GET", "unmatched", "404")
        if (seen >= 1 and keys >= 1 and unmatched >= 1) or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # the counter moves just after the answer is sent
    assert seen >= 1, text
    assert keys >= 1, text
    assert unmatched >= 1, text
    # Labels are route templates: no concrete id or path ever becomes a label value.
    assert account_id not in text
    assert "/no/such/" not in text
    assert samples(text, "computalot_http_request_duration_seconds_count")
    # The platform's merge (docs/metrics.md): the replica and the engine both report.
    assert "computalot_metrics_board_up 1.0" in text.splitlines(), text
    assert samples(text, "computalot_metrics_sources") == [
        ({"kind": "api"}, 1.0),
        ({"kind": "engine"}, 1.0),
    ]

    # The counter moves with traffic.
    for _ in range(3):
        assert member.get("/api/v1/account").status_code == 200
    deadline = time.monotonic() + 30
    while request_count(anon.get("/metrics").text, "GET", "/api/v1/account", "200") < seen + 3:
        assert time.monotonic() < deadline, "metrics did not count three more requests"
        time.sleep(0.05)


def test_a_forwarded_for_sent_through_the_ingress_is_replaced(anon: httpx.Client) -> None:
    """The ingress sets X-Forwarded-For to the client's own address: a client on the API host
    claiming another address is still the loopback client it is."""
    answer = anon.get("/metrics", headers=REMOTE)
    assert answer.status_code == 200, answer.text


async def test_metrics_for_a_remote_client(
    platform: Any, admin: httpx.Client, member: httpx.Client
) -> None:
    """A client on another host cannot be made through the session's ingress (it binds
    loopback and tells the app each client's real address): the app in-process, on the
    session's store, with a remote peer."""
    app = create_app(platform.settings)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.5", 40000))
    auth = {"Authorization": str(admin.headers["authorization"])}
    as_member = {"Authorization": str(member.headers["authorization"])}
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as anon:
        err = assert_envelope(await anon.get("/metrics"), 403, "forbidden")
        assert "token" in err["recommended_action"]
        assert_envelope(await anon.get("/metrics", headers=as_member), 403, "forbidden")
        garbage = {"Authorization": "Bearer flk_garbage"}
        assert_envelope(await anon.get("/metrics", headers=garbage), 403, "forbidden")
        basic = {"Authorization": "Basic x"}
        assert_envelope(await anon.get("/metrics", headers=basic), 403, "forbidden")
        ok = await anon.get("/metrics", headers=auth)
        assert ok.status_code == 200, ok.text
        assert "computalot_http_requests" in ok.text
        # An app outside Serve is no replica of the platform: it answers for itself.
        assert "computalot_metrics_board_up 0.0" in ok.text.splitlines()
        metrics_token = platform.settings.metrics_token.get_secret_value()
        with_token = await anon.get(
            "/metrics", headers={"Authorization": f"Bearer {metrics_token}"}
        )
        assert with_token.status_code == 200, with_token.text
        odd = {"Authorization": "Bearer café".encode()}  # not ASCII: refused, never a 500
        assert_envelope(await anon.get("/metrics", headers=odd), 403, "forbidden")
    # Straight from loopback, but naming a chain of proxies (not our ingress): the first hop
    # is the client.
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as local:
        chained = {"X-Forwarded-For": "203.0.113.5, 127.0.0.1"}
        assert_envelope(await local.get("/metrics", headers=chained), 403, "forbidden")
        assert (await local.get("/metrics")).status_code == 200


# ---- feedback -------------------------------------------------------------------------------------


def test_feedback_without_auth_for_every_type(anon: httpx.Client, admin: httpx.Client) -> None:
    marker = uuid.uuid4().hex[:10]
    sent = {}
    for kind in FEEDBACK_TYPES:
        body = {"type": kind, "title": f"{kind} {marker}", "description": f"about {kind}"}
        answer = anon.post("/api/v1/feedback", json=body)
        assert answer.status_code == 201, answer.text
        row = answer.json()["feedback"]
        assert row["id"].startswith("fb_")
        assert (row["type"], row["title"], row["description"]) == (
            body["type"],
            body["title"],
            body["description"],
        )
        assert row["account_id"] is None
        sent[row["id"]] = row

    listed = admin.get("/api/v1/admin/feedback", params={"limit": 1000})
    assert listed.status_code == 200, listed.text
    by_id = {f["id"]: f for f in listed.json()["feedback"]}
    for fid, row in sent.items():
        assert by_id[fid] == row


def test_feedback_records_a_valid_token_and_ignores_a_bad_one(
    anon: httpx.Client, admin: httpx.Client, member: httpx.Client
) -> None:
    body = {"type": "bug", "title": f"signed {uuid.uuid4().hex[:8]}", "description": "d"}
    mine = member.post("/api/v1/feedback", json=body)
    assert mine.status_code == 201, mine.text
    assert mine.json()["feedback"]["account_id"] == member.account["id"]
    garbled = anon.post(
        "/api/v1/feedback", json=body, headers={"Authorization": "Bearer flk_garbage"}
    )
    assert garbled.status_code == 201, garbled.text
    assert garbled.json()["feedback"]["account_id"] is None
    listed = admin.get("/api/v1/admin/feedback").json()["feedback"]
    assert any(f["id"] == mine.json()["feedback"]["id"] for f in listed)


def test_feedback_limits(anon: httpx.Client) -> None:
    ok = anon.post(
        "/api/v1/feedback", json={"type": "bug", "title": "t" * 200, "description": "d" * 10_000}
    )
    assert ok.status_code == 201, ok.text
    err = assert_envelope(
        anon.post("/api/v1/feedback", json={"type": "bug", "title": "t" * 201, "description": "d"}),
        422,
        "validation_error",
    )
    assert err["details"][0]["loc"] == ["title"]
    err = assert_envelope(
        anon.post(
            "/api/v1/feedback", json={"type": "bug", "title": "t", "description": "d" * 10_001}
        ),
        422,
        "validation_error",
    )
    assert err["details"][0]["loc"] == ["description"]
    err = assert_envelope(
        anon.post("/api/v1/feedback", json={"type": "nope", "title": "t", "description": "d"}),
        422,
        "validation_error",
    )
    assert err["details"][0]["loc"] == ["type"]


def test_feedback_list_is_admin_only(anon: httpx.Client, member: httpx.Client) -> None:
    assert_envelope(anon.get("/api/v1/admin/feedback"), 401, "unauthorized")
    assert_envelope(member.get("/api/v1/admin/feedback"), 403, "forbidden")


# ---- discovery ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/skill.md", "text/markdown"),
        ("/llms.txt", "text/plain"),
        ("/llms-full.txt", "text/plain"),
        ("/docs", "text/html"),
    ],
)
def test_text_discovery_pages_are_public(
    anon: httpx.Client, platform: Any, path: str, content_type: str
) -> None:
    answer = anon.get(path)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith(content_type)
    assert len(answer.text) > 500
    assert "{base_url}" not in answer.text
    if path != "/docs":
        # Examples are written against the URL the caller used, so curl lines work verbatim.
        assert platform.url.rstrip("/") in answer.text


def test_docs_html_links_every_discovery_page(anon: httpx.Client) -> None:
    html = anon.get("/docs").text
    assert html.lstrip().lower().startswith("<!doctype html")
    hrefs = set(re.findall(r'href="([^"]+)"', html))
    for path in ("/llms.txt", "/llms-full.txt", "/skill.md", "/api/v1/docs", "/openapi.json"):
        assert path in hrefs, (path, sorted(hrefs))
    for href in hrefs:
        if href.startswith("/"):
            assert anon.get(href).status_code == 200, href


def test_docs_json_index(anon: httpx.Client, platform: Any) -> None:
    answer = anon.get("/api/v1/docs")
    assert answer.status_code == 200, answer.text
    index = answer.json()
    base = platform.url.rstrip("/")
    assert index["base_url"] == base
    names = {d["name"] for d in index["docs"]}
    assert {"skill", "llms", "llms-full", "docs", "recipes", "python-sdk", "workflows"} <= names
    for doc in index["docs"]:
        assert doc["url"].startswith(base)
        assert anon.get(doc["url"].removeprefix(base)).status_code == 200, doc
    openapi = anon.get("/openapi.json").json()
    assert index["openapi"]["path"] == "/openapi.json"
    assert index["openapi"]["paths"] == len(openapi["paths"])
    assert "POST /api/v1/feedback" in index["public_routes"]
    assert "GET /api/v1/account" not in index["public_routes"]


@pytest.mark.parametrize("name", ["recipes", "python-sdk", "workflows"])
def test_docs_guides_are_public(anon: httpx.Client, name: str) -> None:
    answer = anon.get(f"/api/v1/docs/{name}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["name"] == name and body["format"] == "markdown"
    assert len(body["content"]) > 200 and "{base_url}" not in body["content"]
    markdown = anon.get(f"/api/v1/docs/{name}", headers={"Accept": "text/markdown"})
    assert markdown.status_code == 200
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text == body["content"]
    html = anon.get(f"/api/v1/docs/{name}", headers={"Accept": "text/html"})
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")


def test_openapi_is_public(anon: httpx.Client) -> None:
    answer = anon.get("/openapi.json")
    assert answer.status_code == 200, answer.text
    paths = answer.json()["paths"]
    for path in ("/api/v1/account", "/api/v1/feedback", "/api/v1/auth/wallet/verify", "/ready"):
        assert path in paths


def test_every_route_of_the_app_is_in_llms_txt() -> None:
    app = create_app(load_settings())
    routes = docs_site.app_routes(app)
    documented = docs_site.endpoint_reference(docs_site.page_text("llms", "http://x"))
    assert len(routes) > 20
    assert {("GET", "/api/v1/account"), ("POST", "/api/v1/feedback")} <= routes
    assert routes - documented == set(), "routes missing from llms.txt's Endpoint Reference"
    assert documented - routes == set(), "llms.txt documents routes the app does not serve"


def test_live_openapi_matches_the_live_llms_txt(anon: httpx.Client) -> None:
    """The same walk against what the running server actually serves."""
    documented = docs_site.endpoint_reference(anon.get("/llms.txt").text)
    served = {
        (method.upper(), docs_site.normalize_path(path))
        for path, ops in anon.get("/openapi.json").json()["paths"].items()
        for method in ops
        if method.upper() in docs_site.METHODS
    }
    served.add(("GET", "/openapi.json"))
    assert served - documented == set()


async def test_metrics_cannot_be_unlocked_by_a_forged_forwarded_for(tmp_path: Any) -> None:
    """Not reproducible through the session platform (it binds loopback), so in-process."""
    app = create_app(load_settings(data_dir=tmp_path, host="0.0.0.0"))
    transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/metrics")).status_code == 403
        forged = await client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
    assert forged.status_code == 403, forged.text[:200]


async def test_ready_is_503_without_an_engine(tmp_path: Any) -> None:
    """The not-ready branch (the session platform is always ready), in-process."""
    app = create_app(load_settings(data_dir=tmp_path))  # engine=None: not configured
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answer = await client.get("/ready")
        assert (await client.get("/live")).status_code == 200
    err = assert_envelope(answer, 503, "not_ready")
    assert answer.json()["checks"]["engine"].startswith("unavailable")
    assert "engine" in err["message"]
