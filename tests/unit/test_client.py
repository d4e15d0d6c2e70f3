"""SDK and user CLI, unit level: request building, error mapping, tarballs, SSE resume.

Everything runs against ``httpx.MockTransport``; the real server is exercised by the
integration tests.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from computalot.projects.tarball import extract_tarball
from computalot.sdk.base import Req, build_tarball
from computalot.sdk.client import AsyncComputalotClient, ComputalotClient
from computalot.sdk.errors import (
    ApiConnectionError,
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    NotReady,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    Unauthorized,
    ValidationError,
)
from tests.support.mock_api import (
    BASE,
    Handler,
    Recorder,
    body_of,
    client_for,
    envelope,
    event_stream,
    make_project,
    sse,
)

# --- construction and headers ---------------------------------------------------------------


def test_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPUTALOT_URL", "http://env.test:9000/")
    monkeypatch.setenv("COMPUTALOT_TOKEN", "flk_env")
    rec = Recorder()
    client = ComputalotClient(transport=httpx.MockTransport(rec))
    client.account()
    assert client.controller_url == "http://env.test:9000"
    assert str(rec.last.url) == "http://env.test:9000/api/v1/account"
    assert rec.last.headers["authorization"] == "Bearer flk_env"
    assert rec.last.headers["user-agent"].startswith("computalot-python/")


def test_no_token_sends_no_authorization(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMPUTALOT_TOKEN", raising=False)
    rec = Recorder()
    client_for(rec, token=None).health()
    assert "authorization" not in rec.last.headers
    assert str(rec.last.url) == f"{BASE}/health"


ROUTES: list[tuple[str, Callable[[ComputalotClient], Any], str, str, Any]] = [
    ("account", lambda c: c.account(), "GET", "/api/v1/account", None),
    ("ready", lambda c: c.ready(), "GET", "/ready", None),
    ("list_projects", lambda c: c.list_projects(), "GET", "/api/v1/projects", None),
    ("create_project", lambda c: c.create_project("demo", description="d"), "POST",
     "/api/v1/projects", {"name": "demo", "description": "d"}),
    ("get_project quoted", lambda c: c.get_project("a/b"), "GET", "/api/v1/projects/a%2Fb", None),
    ("update_project", lambda c: c.update_project("demo", remote_dir="/r", description=None),
     "PUT", "/api/v1/projects/demo", {"remote_dir": "/r"}),
    ("delete_project", lambda c: c.delete_project("demo"), "DELETE", "/api/v1/projects/demo", None),
    ("project_status", lambda c: c.project_status("demo"), "GET",
     "/api/v1/projects/demo/status", None),
    ("status_details", lambda c: c.project_status_details("demo"), "GET",
     "/api/v1/projects/demo/status/details", None),
    ("submit_job kwargs", lambda c: c.submit_job(project="p", runner_command=["python3", "j.py"],
                                                 timeout_s=None),
     "POST", "/api/v1/jobs", {"project": "p", "runner_command": ["python3", "j.py"]}),
    ("submit_job dict", lambda c: c.submit_job({"project": "p", "tags": ["a"]}, tags=["b"]),
     "POST", "/api/v1/jobs", {"project": "p", "tags": ["b"]}),
    ("batch", lambda c: c.submit_jobs_batch([{"project": "p"}]), "POST", "/api/v1/jobs/batch",
     {"jobs": [{"project": "p"}]}),
    ("list_jobs", lambda c: c.list_jobs(status="running", tag="x", limit=5), "GET",
     "/api/v1/jobs?status=running&tag=x&limit=5", None),
    ("get_job", lambda c: c.get_job("job_1"), "GET", "/api/v1/jobs/job_1", None),
    ("get_tasks", lambda c: c.get_tasks("job_1"), "GET", "/api/v1/jobs/job_1/tasks", None),
    ("get_output", lambda c: c.get_output("job_1"), "GET", "/api/v1/jobs/job_1/output", None),
    ("get_events", lambda c: c.get_events("job_1", after=10), "GET",
     "/api/v1/jobs/job_1/events?limit=200&after=10", None),
    ("cancel_job", lambda c: c.cancel_job("job_1"), "PUT", "/api/v1/jobs/job_1/cancel", None),
    ("get_results", lambda c: c.get_results("job_1", limit=10, cursor="c1"), "GET",
     "/api/v1/results/job_1?limit=10&cursor=c1", None),
    ("presets", lambda c: c.presets(), "GET", "/api/v1/presets", None),
    ("get_tasks paged", lambda c: c.get_tasks("job_1", status="failed", limit=5, cursor="c"),
     "GET", "/api/v1/jobs/job_1/tasks?status=failed&limit=5&cursor=c", None),
    ("get_output paged", lambda c: c.get_output("job_1", limit=5), "GET",
     "/api/v1/jobs/job_1/output?limit=5", None),
    ("docs_guide", lambda c: c.docs_guide("workflows"), "GET", "/api/v1/docs/workflows", None),
    ("live", lambda c: c.live(), "GET", "/live", None),
    ("admin account", lambda c: c.admin_create_account("alice", credit_usd=10), "POST",
     "/api/v1/admin/accounts", {"name": "alice", "role": "member", "credit_usd": 10}),
    ("admin key", lambda c: c.admin_create_key("acct_1"), "POST",
     "/api/v1/admin/accounts/acct_1/keys", {}),
    ("admin revoke", lambda c: c.admin_revoke_key("key_1"), "POST",
     "/api/v1/admin/keys/key_1/revoke", None),
    ("admin wallet", lambda c: c.admin_whitelist_wallet("0xabc"), "POST", "/api/v1/admin/wallets",
     {"wallet_address": "0xabc", "chain": "base", "role": "member"}),
    ("admin grant", lambda c: c.admin_grant("acct_1", 5.5, memo="m"), "POST",
     "/api/v1/admin/accounts/acct_1/grants", {"amount_usd": 5.5, "memo": "m"}),
    ("admin feedback", lambda c: c.admin_list_feedback(), "GET", "/api/v1/admin/feedback", None),
    ("feedback", lambda c: c.send_feedback("bug", "t", "d"), "POST", "/api/v1/feedback",
     {"type": "bug", "title": "t", "description": "d"}),
    ("challenge", lambda c: c.wallet_challenge("0xabc"), "POST", "/api/v1/auth/wallet/challenge",
     {"wallet_address": "0xabc", "chain": "base"}),
    ("verify", lambda c: c.wallet_verify("wch_1", "0xabc", "0xsig"), "POST",
     "/api/v1/auth/wallet/verify",
     {"challenge_id": "wch_1", "wallet_address": "0xabc", "signature": "0xsig"}),
]  # fmt: skip


@pytest.mark.parametrize(("call", "method", "target", "body"), [r[1:] for r in ROUTES],
                         ids=[r[0] for r in ROUTES])  # fmt: skip
def test_each_method_builds_its_route(
    call: Callable[[ComputalotClient], Any], method: str, target: str, body: Any
) -> None:
    rec = Recorder()
    assert call(client_for(rec)) == {"ok": True}
    assert rec.last.method == method
    assert rec.last.url.raw_path.decode() == target
    assert body_of(rec.last) == body
    if body is not None:
        assert rec.last.headers["content-type"] == "application/json"


def test_submits_carry_the_given_idempotency_key_or_a_fresh_one() -> None:
    rec = Recorder()
    client = client_for(rec)
    client.submit_job(project="p", idempotency_key="abc")
    assert rec.last.headers["idempotency-key"] == "abc"
    client.submit_job(project="p")
    first = rec.last.headers["idempotency-key"]
    client.submit_recipe_job("packing", {"operation": "eval"})
    second = rec.last.headers["idempotency-key"]
    assert first.startswith("sdk-") and second.startswith("sdk-") and first != second
    client.submit_jobs_batch([{"project": "p"}])
    assert "idempotency-key" not in rec.last.headers  # the batch route takes none


def test_answers_decode_to_dicts() -> None:
    replies = iter(
        [httpx.Response(200, json=[1, 2]), httpx.Response(204), httpx.Response(200, text="hi")]
    )
    client = client_for(lambda req: next(replies))
    assert client.list_jobs() == {"data": [1, 2]}
    assert client.delete_project("p") == {}
    assert client.llms_txt() == "hi"


def test_a_route_the_server_does_not_serve_fails_in_the_mock_too() -> None:
    client = client_for(Recorder())
    with pytest.raises(NotFound):
        client._call(Req("GET", "/api/v1/workflows"))
    with pytest.raises(ValueError):
        client.docs_guide("nope")  # type: ignore[arg-type]


# --- errors ---------------------------------------------------------------------------------

STATUS_CLASSES = [
    (400, "bad_request", BadRequest),
    (401, "unauthorized", Unauthorized),
    (403, "forbidden", Forbidden),
    (404, "not_found", NotFound),
    (409, "conflict", Conflict),
    (413, "payload_too_large", PayloadTooLarge),
    (422, "unsatisfiable_requirements", ValidationError),
    (429, "rate_limited", RateLimited),
    (500, "internal_error", ServerError),
    (503, "not_ready", NotReady),
]


@pytest.mark.parametrize(("status", "code", "cls"), STATUS_CLASSES)
def test_error_envelope_maps_to_typed_exception(
    status: int, code: str, cls: type[ApiError]
) -> None:
    client = client_for(lambda req: httpx.Response(status, json=envelope(code, "nope", "retry")))
    with pytest.raises(cls) as info:
        client.get_job("job_1")
    err = info.value
    assert (err.status, err.code, err.message, err.recommended_action) == (
        status,
        code,
        "nope",
        "retry",
    )
    assert err.details == [{"loc": ["x"], "msg": "bad"}]
    assert err.body["error"]["code"] == code
    assert isinstance(err, ApiError)


def test_rate_limited_exposes_retry_after() -> None:
    answer = httpx.Response(
        429, json=envelope("rate_limited", "slow"), headers={"Retry-After": "7"}
    )
    with pytest.raises(RateLimited) as info:
        client_for(lambda req: answer).list_jobs()
    assert info.value.retry_after == 7.0
    assert isinstance(NotReady("x"), ServerError)


def test_non_json_error_bodies_fall_back_gracefully() -> None:
    html = httpx.Response(502, text="<html>Bad Gateway</html>")
    with pytest.raises(ServerError) as info:
        client_for(lambda req: html).get_job("j")
    assert (info.value.status, info.value.code) == (502, "internal_error")
    assert "Bad Gateway" in info.value.message
    assert info.value.recommended_action
    with pytest.raises(ApiError) as teapot:
        client_for(lambda req: httpx.Response(418, json={"detail": "x"})).get_job("j")
    assert type(teapot.value) is ApiError and teapot.value.status == 418
    with pytest.raises(NotFound) as empty:
        client_for(lambda req: httpx.Response(404)).get_job("j")
    assert empty.value.code == "not_found" and empty.value.message == "Not Found"


def test_connection_failure_is_an_api_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ApiConnectionError) as info:
        client_for(refuse).account()
    assert info.value.status == 0 and info.value.code == "connection_error"
    assert BASE in info.value.message


# --- project push ---------------------------------------------------------------------------


def test_push_directory_sends_a_raw_gzip_tarball(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    rec = Recorder(lambda req: httpx.Response(200, json={"revision": {"id": "rev_1"}}))
    answer = client_for(rec).push_project("demo", project)
    assert answer["revision"]["id"] == "rev_1"
    req = rec.last
    assert (req.method, req.url.path) == ("POST", "/api/v1/projects/demo/push")
    assert req.headers["content-type"] == "application/gzip"
    assert req.content[:2] == b"\x1f\x8b"
    with tarfile.open(fileobj=io.BytesIO(req.content), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == ["job.py", "link.py", "run.sh", "sub/mod.py"]
        assert all(m.isfile() for m in members.values())
        assert members["run.sh"].mode == 0o755 and members["job.py"].mode == 0o644
        link = tar.extractfile("link.py")
        assert link is not None and link.read() == b"print('hi')\n"
    # The server's own safe extractor accepts it, and packing is deterministic.
    (tmp_path / "t.tar.gz").write_bytes(req.content)
    tree = extract_tarball(tmp_path / "t.tar.gz", tmp_path / "out")
    assert [f.path for f in tree.files] == ["job.py", "link.py", "run.sh", "sub/mod.py"]
    assert build_tarball(project) == req.content


def test_push_tarball_file_or_bytes_is_sent_as_is(tmp_path: Path) -> None:
    raw = gzip.compress(b"not checked client-side")
    (tmp_path / "code.tar.gz").write_bytes(raw)
    rec = Recorder()
    client = client_for(rec)
    client.push_project("demo", tmp_path / "code.tar.gz")
    assert rec.last.content == raw
    client.push_project("demo", str(tmp_path / "code.tar.gz"))
    assert rec.last.content == raw
    client.push_project("demo", raw)
    assert rec.last.content == raw
    assert "multipart" not in rec.last.headers["content-type"]


# --- results ------------------------------------------------------------------------------


def _paged_results(req: httpx.Request) -> httpx.Response:
    cursor = req.url.params.get("cursor")
    assert req.url.params.get("limit") == "2"
    pages = {None: ([0, 1], "c1"), "c1": ([2, 3], "c2"), "c2": ([4], None)}
    indexes, nxt = pages[cursor]
    return httpx.Response(
        200, json={"results": [{"index": i} for i in indexes], "next_cursor": nxt}
    )


def test_iter_results_walks_every_page() -> None:
    rec = Recorder(_paged_results)
    got = [r["index"] for r in client_for(rec).iter_results("job_1", page_size=2)]
    assert got == [0, 1, 2, 3, 4]
    assert len(rec.requests) == 3


async def test_async_iter_results_walks_every_page() -> None:
    client = AsyncComputalotClient(BASE, "flk_test", transport=httpx.MockTransport(_paged_results))
    async with client:
        got = [r["index"] async for r in client.iter_results("job_1", page_size=2)]
    assert got == [0, 1, 2, 3, 4]


# --- wait -----------------------------------------------------------------------------------


def test_wait_polls_until_terminal() -> None:
    states = iter(["queued", "running", "partial"])
    rec = Recorder(lambda req: httpx.Response(200, json={"id": "job_1", "status": next(states)}))
    assert client_for(rec).wait("job_1", poll_interval=0.001)["status"] == "partial"
    assert len(rec.requests) == 3


def test_wait_raises_timeout_error() -> None:
    client = client_for(lambda req: httpx.Response(200, json={"status": "running"}))
    with pytest.raises(TimeoutError):
        client.wait("job_1", timeout=0.05, poll_interval=0.01)


# --- SSE ------------------------------------------------------------------------------------


SNAPSHOT = {"id": "job_1", "status": "running", "task_counts": {"total": 2}}
JOB_EVENTS = [  # as the server sends them: an unnumbered snapshot first, then stored events
    f"event: job\ndata: {json.dumps(SNAPSHOT)}\n\n".encode(),
    sse(2, "output", {"task_id": "tsk_1", "stream": "stdout", "text": "hello"}),
    b": heartbeat\n\n",
    sse(3, "task", {"job_id": "job_1", "task_id": "tsk_1", "index": 0, "status": "completed"}),
    sse(4, "end", {"id": "job_1", "status": "completed"}),
]


def test_stream_parses_events_and_stops_at_end() -> None:
    rec = Recorder(lambda req: event_stream([*JOB_EVENTS, sse(5, "job", {"late": True})]))
    events = list(client_for(rec).stream("job_1"))
    assert [(e["id"], e["event"]) for e in events] == [
        (None, "job"),
        (2, "output"),
        (3, "task"),
        (4, "end"),
    ]
    assert events[1]["data"] == {"task_id": "tsk_1", "stream": "stdout", "text": "hello"}
    assert rec.last.url.path == "/api/v1/jobs/job_1/stream"
    assert rec.last.headers["accept"] == "text/event-stream"
    assert "last-event-id" not in rec.last.headers


def dropping_once(requests: list[httpx.Request]) -> Handler:
    def reply(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if len(requests) == 1:
            return event_stream(JOB_EVENTS[:2], drop=True)
        return event_stream(JOB_EVENTS[2:])

    return reply


def test_stream_resumes_with_last_event_id_after_a_drop() -> None:
    seen: list[httpx.Request] = []
    events = list(client_for(dropping_once(seen)).stream("job_1"))
    assert [e["id"] for e in events] == [None, 2, 3, 4]
    assert len(seen) == 2
    assert "last-event-id" not in seen[0].headers
    assert seen[1].headers["last-event-id"] == "2"


def test_stream_starts_from_a_given_event_id_and_gives_up_after_retries() -> None:
    seen: list[httpx.Request] = []

    def always_empty(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return event_stream([])

    client = client_for(always_empty)
    with pytest.raises(ApiConnectionError):
        list(client.stream("job_1", last_event_id=41))
    assert len(seen) == client.stream_retries + 1
    assert {r.headers["last-event-id"] for r in seen} == {"41"}


def test_stream_error_answer_raises_typed_error() -> None:
    client = client_for(lambda req: httpx.Response(404, json=envelope("not_found", "no job")))
    with pytest.raises(NotFound):
        list(client.stream("job_x"))


def test_watch_streams_several_jobs_until_each_ended() -> None:
    chunks = [
        sse(1, "end", {"job_id": "job_a", "id": "job_a", "status": "completed"}),
        sse(2, "task", {"job_id": "job_b", "task_id": "tsk_1", "status": "running"}),
        sse(3, "end", {"job_id": "job_b", "id": "job_b", "status": "failed"}),
        sse(4, "job", {"job_id": "job_c"}),
    ]
    rec = Recorder(lambda req: event_stream(chunks))
    events = list(client_for(rec).watch(["job_a", "job_b"]))
    assert [e["id"] for e in events] == [1, 2, 3]
    assert rec.last.url.path == "/api/v1/jobs/watch"
    assert rec.last.url.params["ids"] == "job_a,job_b"


# --- async twin -----------------------------------------------------------------------------


def async_client_for(handler: Handler) -> AsyncComputalotClient:
    client = AsyncComputalotClient(BASE, "flk_test", transport=httpx.MockTransport(handler))
    client.stream_retry_delay = 0.0
    return client


async def test_async_client_mirrors_routes_errors_and_resume(tmp_path: Path) -> None:
    rec = Recorder()
    async with async_client_for(rec) as client:
        assert await client.submit_job(project="p", idempotency_key="k") == {"ok": True}
        assert (rec.last.method, rec.last.url.path) == ("POST", "/api/v1/jobs")
        assert rec.last.headers["idempotency-key"] == "k"
        await client.cancel_job("job_1")
        assert (rec.last.method, rec.last.url.path) == ("PUT", "/api/v1/jobs/job_1/cancel")
        await client.push_project("demo", make_project(tmp_path / "p"))
        assert rec.last.headers["content-type"] == "application/gzip"

    failing = async_client_for(lambda r: httpx.Response(409, json=envelope("conflict", "taken")))
    with pytest.raises(Conflict):
        await failing.create_project("demo")

    seen: list[httpx.Request] = []
    streaming = async_client_for(dropping_once(seen))
    events = [e async for e in streaming.stream("job_1")]
    assert [e["id"] for e in events] == [None, 2, 3, 4]
    assert seen[1].headers["last-event-id"] == "2"

    states = iter(["running", "completed"])
    poller = async_client_for(lambda r: httpx.Response(200, json={"status": next(states)}))
    assert (await poller.wait("job_1", poll_interval=0.001))["status"] == "completed"
