"""Every route, three callers, hostile input: never a 5xx, always the envelope (issue #12).

The routes are the app's own (its OpenAPI document, checked against the one the running server
serves), so a route added later is fuzzed without touching this file. For each route and each
caller (no token, a member's key, an admin's key) hypothesis draws requests with hostile path
parameters (another account's real ids, the caller's own, long, unicode, ``..``,
percent-encoded bytes), query values and headers, and bodies nested past the depth limit, huge
(up to 4 MiB; at and over the 16 MiB limit in a test of their own), of the wrong type per
field, carrying NUL, control characters, lone surrogates, NaN / Infinity, invalid UTF-8,
truncated, or sent as another content type. Every body field's wrong types, every query and
header parameter's hostile values and every method a path does not serve are also sent one by
one. Every answer must be under 500, in the error envelope (docs/llms-full.md, "Errors") when it is not 2xx, and never a
traceback; a body no route may accept is never 2xx, and another account's object is never 2xx.
Afterwards the platform is ready and runs a trivial job. Findings that belong to other modules
are ``xfail(strict=True)`` tests of their own, so they flip when fixed.
"""

from __future__ import annotations

import json
import re
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from computalot.settings import Settings
from serve_app.app import ROUTERS, create_app
from tests.support.fuzz_bodies import (
    BODY_KINDS,
    JSON,
    NO_BODY,
    STRAY_KINDS,
    Body,
    every_wrong_body,
    plausible,
)
from tests.support.fuzz_checks import assert_envelope, check
from tests.support.fuzz_http import Exchange, exchange
from tests.support.fuzz_inputs import (
    CURSOR_VALUES,
    OVERFLOWING_EVENT_IDS,
    Caller,
    FuzzRequest,
    Operation,
    cursor_of,
    every_hostile_parameter,
    fuzz_requests,
    operations,
)
from tests.support.helpers import submit_job, wait_job

API = "/api/v1"
CALLERS = ["anon", "member", "admin"]
JSON_LIMIT = 16 * 1024 * 1024

RUNNER = r"""
import json, os, time
p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
time.sleep(min(float(p.get("sleep", 0)), 900))
json.dump({"ok": True}, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))
"""


def fuzz_settings(max_examples: int) -> Any:
    """Reproducible (derandomized, no example database written) and within the suite's budget."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def app_document() -> dict[str, Any]:
    """The OpenAPI document of the app as ``create_app`` builds it (no server, no store)."""
    with tempfile.TemporaryDirectory() as data_dir, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # HEAD and GET share an operation id
        return create_app(Settings(data_dir=Path(data_dir))).openapi()


#: What FastAPI serves beside the routers (not in the OpenAPI document it serves).
OWN_ROUTES = [("GET", "/openapi.json"), ("HEAD", "/openapi.json")]


def app_operations() -> list[tuple[str, str]]:
    """Every (method, path) the app serves, its own /openapi.json (GET and HEAD) included."""
    found = [(op.method, op.path) for op in operations(app_document())]
    return [*found, *OWN_ROUTES]


OPERATIONS = app_operations()
BODY_ROUTES = [(op.method, op.path) for op in operations(app_document()) if op.body_schema]
PLAIN_ROUTES = [route for route in OPERATIONS if route not in BODY_ROUTES]


def route_ids(routes: list[tuple[str, str]]) -> list[str]:
    return [f"{method} {path}" for method, path in routes]


@dataclass(repr=False)
class World:
    """The running platform as the fuzz sees it: its port, its served routes, three callers."""

    port: int
    routes: dict[tuple[str, str], Operation]
    callers: dict[str, Caller]

    def __repr__(self) -> str:  # hypothesis prints it with every failing example
        return f"World(port={self.port})"


def _key(admin: httpx.Client, account_id: str, *, revoke: bool = False) -> dict[str, Any]:
    made = admin.post(f"{API}/admin/accounts/{account_id}/keys", json={"name": "fuzz-spare"})
    assert made.status_code == 201, made.text
    key = dict(made.json()["key"])
    if revoke:
        revoked = admin.post(f"{API}/admin/keys/{key['id']}/revoke")
        assert revoked.status_code == 200, revoked.text
    return key


def _ids(client: Any, project: str, jobs: list[str], key_id: str) -> dict[str, list[str]]:
    return {
        "job_id": jobs,
        "name": [project],
        "account_id": [client.account["id"]],
        "key_id": [key_id],
    }


@pytest.fixture(scope="module")
def world(platform: Any, new_account: Any, make_project: Any) -> Iterator[World]:
    member, boss, other = new_account("member"), new_account("admin"), new_account("member")
    projects = {id(c): make_project(c, {"runner.py": RUNNER}) for c in (member, boss, other)}
    done = {id(c): submit_job(c, projects[id(c)]) for c in (member, boss, other)}
    for c in (member, boss, other):
        assert wait_job(c, done[id(c)])["status"] == "completed"
    running = submit_job(member, projects[id(member)], payload={"sleep": 600}, timeout_s=900)
    spare = {id(c): _key(boss, c.account["id"])["id"] for c in (member, boss, other)}
    revoked = _key(boss, other.account["id"], revoke=True)["token"]

    def ids(c: Any, *jobs: str) -> dict[str, list[str]]:
        return _ids(c, projects[id(c)], [done[id(c)], *jobs], spare[id(c)])

    theirs = ids(other)
    callers = {
        "anon": Caller("anon", None, {}, ids(member, running), revoked, projects[id(member)]),
        "member": Caller(
            "member", member.token, ids(member, running), theirs, revoked, projects[id(member)]
        ),
        "admin": Caller("admin", boss.token, ids(boss), theirs, revoked, projects[id(boss)]),
    }
    document = httpx.get(f"{platform.url}/openapi.json", timeout=30).json()
    routes = {(op.method, op.path): op for op in operations(document)}
    routes.update({(m, p): Operation(m, p, {}, {}) for m, p in OWN_ROUTES})
    yield World(int(platform.url.rsplit(":", 1)[1]), routes, callers)
    member.put(f"{API}/jobs/{running}/cancel")
    # Nothing the fuzz sent reached the other account's objects.
    assert other.get(f"{API}/jobs/{done[id(other)]}").json()["status"] == "completed"
    assert other.get(f"{API}/projects/{projects[id(other)]}").status_code == 200


@pytest.fixture(autouse=True)
def platform_stays_up(world: World, anon: httpx.Client) -> Iterator[None]:
    yield
    assert anon.get("/health").status_code == 200, "the API stopped answering"


def test_the_served_routes_are_the_ones_fuzzed(world: World) -> None:
    assert set(world.routes) == set(OPERATIONS)
    # A route left out of the OpenAPI document is served all the same.
    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    # OpenAPI names ``{key:path}`` (a parameter that may hold "/") as ``{key}``.
    declared = {
        (method, re.sub(r"\{(\w+):\w+\}", r"{\1}", r.path))
        for r in routes
        for method in r.methods or ()
    }
    assert declared <= set(OPERATIONS), declared - set(OPERATIONS)


def fuzz_one(world: World, method: str, path: str, caller: str, kind: str, data: Any) -> None:
    op, who = world.routes[(method, path)], world.callers[caller]
    request = data.draw(fuzz_requests(op, who, kind))
    answer = exchange(
        world.port, request.method, request.target, request.headers, request.body.data
    )
    check(answer, request, path)


@pytest.mark.parametrize("kind", BODY_KINDS)
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("method", "path"), BODY_ROUTES, ids=route_ids(BODY_ROUTES))
@fuzz_settings(max_examples=4)
@given(data=st.data())
def test_hostile_bodies_get_the_envelope_and_never_a_5xx(
    world: World, method: str, path: str, caller: str, kind: str, data: st.DataObject
) -> None:
    fuzz_one(world, method, path, caller, kind, data)


@pytest.mark.parametrize("kind", STRAY_KINDS)
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("method", "path"), PLAIN_ROUTES, ids=route_ids(PLAIN_ROUTES))
@fuzz_settings(max_examples=6)
@given(data=st.data())
def test_hostile_paths_queries_and_headers_get_the_envelope_and_never_a_5xx(
    world: World, method: str, path: str, caller: str, kind: str, data: st.DataObject
) -> None:
    fuzz_one(world, method, path, caller, kind, data)


def own_target(op: Operation, caller: Caller) -> str:
    """The route's path with the caller's own ids (a name nobody has where it has none)."""
    path = op.path
    for name in op.path_params:
        path = path.replace("{" + name + "}", (caller.own.get(name) or ["fz-none"])[0])
    return path


def check_all(world: World, op: Operation, requests: list[FuzzRequest]) -> list[int]:
    """:func:`check` each request (every failure is reported, not only the first); the
    statuses."""
    failures, statuses = [], []
    for request in requests:
        body = request.body.data
        answer = exchange(world.port, request.method, request.target, request.headers, body)
        statuses.append(answer.status)
        try:
            check(answer, request, op.path)
        except AssertionError as exc:
            failures.append(str(exc)[:2000])
    assert not failures, f"{len(failures)} of {len(requests)}:\n\n" + "\n\n".join(failures)
    return statuses


def bearer(caller: Caller) -> list[tuple[bytes, bytes]]:
    return [(b"Authorization", f"Bearer {caller.token}".encode())]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES, ids=route_ids(BODY_ROUTES))
def test_every_field_of_a_wrong_type_or_range_is_refused(
    world: World, method: str, path: str
) -> None:
    """Each declared field, one at a time, as an admin (who passes every role check)."""
    op, admin = world.routes[(method, path)], world.callers["admin"]
    assert op.body_schema is not None
    target = own_target(op, admin).encode()
    headers = [*bearer(admin), (b"Content-Type", JSON)]
    bodies = every_wrong_body(op.body_schema, op.components, admin.project)
    check_all(world, op, [FuzzRequest(method, target, headers, body) for body in bodies])


PARAM_ROUTES = [
    (op.method, op.path)
    for op in operations(app_document())
    if op.params("query") or op.params("header")
]


@pytest.mark.parametrize(("method", "path"), PARAM_ROUTES, ids=route_ids(PARAM_ROUTES))
def test_every_query_and_header_parameter_with_a_hostile_value(
    world: World, method: str, path: str
) -> None:
    op, member = world.routes[(method, path)], world.callers["member"]
    body = NO_BODY
    if op.body_schema is not None:
        body = Body(
            json.dumps(plausible(op.body_schema, op.components, member.project)).encode(),
            JSON,
            "plausible",
        )
    requests = []
    for query, headers in every_hostile_parameter(op, member):
        target = own_target(op, member) + (f"?{query}" if query else "")
        content = [(b"Content-Type", JSON)] if body.data is not None else []
        request = FuzzRequest(method, target.encode(), [*bearer(member), *content, *headers], body)
        requests.append(request)
    check_all(world, op, requests)


CURSOR_ROUTES = [
    (op.method, op.path)
    for op in operations(app_document())
    if any(param["name"] == "cursor" for param in op.params("query"))
]


def a_page_position(value: Any) -> bool:
    """What a paged list's cursor holds: one or two ints (not booleans) or strings."""
    kinds = (str, int)
    return (
        isinstance(value, list)
        and 1 <= len(value) <= 2
        and all(isinstance(v, kinds) and not isinstance(v, bool) for v in value)
    )


@pytest.mark.parametrize(("method", "path"), CURSOR_ROUTES, ids=route_ids(CURSOR_ROUTES))
@fuzz_settings(max_examples=30)
@given(value=CURSOR_VALUES)
def test_a_cursor_is_a_page_or_a_400(world: World, method: str, path: str, value: Any) -> None:
    """The cursor codec: whatever a cursor decodes to, the answer is a page (only for a real
    position) or 400 ``bad_request`` naming the cursor, on every paged route."""
    member = world.callers["member"]
    op = world.routes[(method, path)]
    target = f"{own_target(op, member)}?cursor={cursor_of(value)}".encode()
    request = FuzzRequest(method, target, bearer(member), NO_BODY)
    answer = exchange(world.port, method, target, request.headers)
    check(answer, request, path)
    if answer.status == 200:
        assert a_page_position(value), f"{value!r} taken for a cursor"
    elif len(cursor_of(value)) <= 512:
        error = assert_envelope(answer, request.describe())
        assert (answer.status, error["code"]) == (400, "bad_request"), error
        assert error["details"][0]["loc"] == ["cursor"], error


@pytest.mark.parametrize("event_id", OVERFLOWING_EVENT_IDS, ids=["2**63", "10**30"])
@pytest.mark.parametrize("route", ["stream", "watch"])
def test_an_event_id_past_64_bits_is_refused_or_streamed(
    world: World, route: str, event_id: bytes
) -> None:
    member = world.callers["member"]
    job_id = member.own["job_id"][0]
    path = f"{API}/jobs/{job_id}/stream" if route == "stream" else f"{API}/jobs/watch"
    target = path if route == "stream" else f"{path}?ids={job_id}"
    headers = [(b"Authorization", f"Bearer {member.token}".encode()), (b"Last-Event-ID", event_id)]
    request = FuzzRequest("GET", target.encode(), headers, NO_BODY)
    check(exchange(world.port, "GET", request.target, headers), request, path)


@pytest.mark.parametrize(
    ("route", "field", "number"),
    [("jobs", "meta", "1e400"), ("jobs", "variant", "-1e400"), ("jobs/batch", "meta", "1e400")],
)
def test_a_number_past_float_range_is_refused(
    world: World, route: str, field: str, number: str
) -> None:
    member = world.callers["member"]
    job = {"project": member.project, "runner_command": ["python3", "runner.py"], field: 0.5}
    body = json.dumps({"jobs": [job]} if route == "jobs/batch" else job)
    data = body.replace("0.5", number).encode()
    headers = [(b"Authorization", f"Bearer {member.token}".encode())]
    headers.append((b"Content-Type", b"application/json"))
    request = FuzzRequest(
        "POST", f"{API}/{route}".encode(), headers, Body(data, JSON, number, True)
    )
    check(exchange(world.port, "POST", request.target, headers, data), request, f"{API}/{route}")


#: Methods no route may serve (lower case and unknown ones are not HTTP/1.1 tokens we serve).
ODD_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO", "get"]
ODD_TARGETS = ["*", "//api/v1/jobs", "/api/v1/../../etc/passwd", "/api/v1/jobs/", "/%2e%2e/"]


def test_a_method_a_path_does_not_serve_gets_the_envelope(world: World) -> None:
    member = world.callers["member"]
    requests = [
        FuzzRequest(method, own_target(op, member).encode(), bearer(member), NO_BODY)
        for op in world.routes.values()
        for method in ODD_METHODS
        if (method, op.path) not in world.routes
    ]
    requests += [
        FuzzRequest(method, target.encode(), bearer(member), NO_BODY)
        for target in ODD_TARGETS
        for method in ODD_METHODS
    ]
    statuses = check_all(world, Operation("GET", "/unmatched", {}, {}), requests)
    served = [(r.method, r.target, s) for r, s in zip(requests, statuses, strict=True) if s < 300]
    assert not served, served


@pytest.mark.xfail(
    strict=True,
    reason="HAProxy 2.8's HTTP/1 parser refuses these before a request exists, with its built-in "
    "HTML 400 page, which its errorfiles cannot replace (computalot/ingress.py; HAProxy 3.3 "
    "uses the errorfiles there too)",
)
@pytest.mark.parametrize(
    ("method", "target"), [("CONNECT", "/health"), ("GET", "http://elsewhere.example/health")]
)
def test_a_request_haproxy_refuses_itself_gets_the_envelope(
    world: World, method: str, target: str
) -> None:
    request = FuzzRequest(method, target.encode(), [], NO_BODY)
    check(exchange(world.port, method, request.target, []), request, "/health")


OVER_LIMIT = b'{"_fuzz": "' + b"x" * (JSON_LIMIT - 12) + b'"}'
AT_LIMIT = OVER_LIMIT[:-3] + b'"}'
JSON_TYPE = [(b"Content-Type", JSON)]


def placeholder_target(path: str) -> bytes:
    return path.replace("{", "x").replace("}", "x").encode()


def assert_413(answer: Exchange, path: str) -> None:
    assert answer.status == 413, (answer.status, answer.body[:500], answer.failure)
    assert assert_envelope(answer, path)["code"] == "payload_too_large"


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES, ids=route_ids(BODY_ROUTES))
def test_a_json_body_over_16_mib_is_413_in_the_envelope(
    world: World, method: str, path: str
) -> None:
    assert len(OVER_LIMIT) == JSON_LIMIT + 1
    target = placeholder_target(path)
    assert_413(exchange(world.port, method, target, JSON_TYPE, OVER_LIMIT), path)


#: One public route and one that needs a key: the byte limit is one middleware for every path.
LIMIT_ROUTES = [("POST", f"{API}/feedback"), ("POST", f"{API}/jobs")]


@pytest.mark.parametrize(("method", "path"), LIMIT_ROUTES, ids=route_ids(LIMIT_ROUTES))
def test_a_streamed_body_is_cut_at_16_mib_and_16_mib_itself_is_read(
    world: World, method: str, path: str
) -> None:
    target = placeholder_target(path)
    chunks = [OVER_LIMIT[i : i + (1 << 20)] for i in range(0, len(OVER_LIMIT), 1 << 20)]
    assert_413(exchange(world.port, method, target, JSON_TYPE, chunks=chunks), path)
    assert len(AT_LIMIT) == JSON_LIMIT
    request = FuzzRequest(method, target, JSON_TYPE, Body(AT_LIMIT, JSON, "16 MiB", True))
    answer = exchange(world.port, method, target, JSON_TYPE, AT_LIMIT)
    check(answer, request, path)
    assert answer.status != 413, answer.body[:500]


def test_afterwards_the_platform_is_ready_and_runs_a_trivial_job(
    world: World, anon: httpx.Client, new_account: Any, make_project: Any
) -> None:
    ready = anon.get("/ready")
    assert ready.status_code == 200, ready.text
    client = new_account("member")
    project = make_project(client, {"runner.py": RUNNER})
    job = wait_job(client, submit_job(client, project))
    assert job["status"] == "completed", job
