"""Hostile requests for every route, as hypothesis strategies (tests/integration/test_fuzz_routes.py).

An :class:`Operation` is read from the served OpenAPI document, so a route added later is fuzzed
with its own path, query and body fields. :func:`fuzz_requests` draws one request: path
parameters from real ids (the caller's own and another account's) and hostile text, query values
of the wrong type or size, odd headers, and a body from :mod:`tests.support.fuzz_bodies`.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from tests.support.fuzz_bodies import Body, bodies, stray_bodies, tarball_bodies

PARAM = re.compile(r"\{([^}]+)\}")


@dataclass(frozen=True)
class Operation:
    """One method on one path of the OpenAPI document, its ``$ref``s resolved on demand."""

    method: str
    path: str
    spec: dict[str, Any]
    components: dict[str, Any]

    @property
    def path_params(self) -> list[str]:
        return PARAM.findall(self.path)

    def params(self, where: str) -> list[dict[str, Any]]:
        return [p for p in self.spec.get("parameters", []) if p["in"] == where]

    @property
    def body_schema(self) -> dict[str, Any] | None:
        """The JSON body's schema (``None``: the route reads no JSON body)."""
        content = (self.spec.get("requestBody") or {}).get("content", {})
        schema = content.get("application/json", {}).get("schema")
        return self.resolve(schema) if schema is not None else None

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """``schema`` with a top-level ``$ref`` (or a ``$ref | null``) replaced by its target."""
        if "$ref" in schema:
            return dict(self.components[schema["$ref"].rsplit("/", 1)[1]])
        refs = [s for s in schema.get("anyOf", []) if "$ref" in s]
        return self.resolve(refs[0]) if refs else schema


def operations(document: dict[str, Any]) -> list[Operation]:
    components = document.get("components", {}).get("schemas", {})
    return [
        Operation(method.upper(), path, spec, components)
        for path, methods in document["paths"].items()
        for method, spec in methods.items()
    ]


@dataclass(frozen=True)
class Caller:
    """Who sends the request and which real objects its path and query values may name.

    ``own`` and ``others`` map a parameter name (``job_id``, ``name``, ``account_id``,
    ``key_id``) to ids of the caller's own objects and of another account's."""

    name: str
    token: str | None
    own: dict[str, list[str]] = field(default_factory=dict)
    others: dict[str, list[str]] = field(default_factory=dict)
    revoked_token: str = ""
    project: str = "no-such-project"


@dataclass
class FuzzRequest:
    method: str
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: Body
    #: A path parameter names another account's object (404 unless an admin route).
    names_other: bool = False

    def describe(self) -> str:
        body = self.body.data
        shown = body[:300] if body is not None else None
        size = len(body) if body is not None else 0
        return (
            f"{self.method} {self.target[:300]!r} ({len(self.target)} bytes) headers="
            f"{[(n, v[:80]) for n, v in self.headers]} body[{self.body.kind}, {size} bytes]="
            f"{shown!r}"
        )


#: Path segments sent as they are (already percent-encoded where they look it).
RAW_SEGMENTS = [
    "..",
    ".",
    "%2e%2e",
    "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "..%2F..%2F",
    "%2F",
    "%ff%fe",
    "%c0%ae%c0%ae",
    "%",
    "%zz",
    "a%2",
    "%00",
    "job_%00",
    "%0d%0aX-Injected:%201",
    "%20",
    "%09",
    "~",
    "*",
    "'%20OR%201=1--",
    "%F0%9F%92%A5",
    "%EF%BC%AA%EF%BC%AF%EF%BC%A2",
    "job_" + "0" * 200,
    "acct_" + "f" * 40,
    "key_" + "a" * 64,
]


def _encoded(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def hostile_text(max_size: int = 40) -> st.SearchStrategy[str]:
    """Any code points: controls, NUL, lone surrogates, right-to-left marks, emoji."""
    return st.text(st.characters(exclude_categories=()), max_size=max_size)


def _segment(caller: Caller, name: str) -> st.SearchStrategy[tuple[str, bool]]:
    choices: list[st.SearchStrategy[tuple[str, bool]]] = []
    # The caller's own ids first: hypothesis leans to a strategy's first branch, and a real id
    # is what lets the hostile query and headers reach the route's own code.
    if caller.own.get(name):
        choices.append(st.sampled_from(caller.own[name]).map(lambda s: (_encoded(s), False)))
    if caller.others.get(name):
        choices.append(st.sampled_from(caller.others[name]).map(lambda s: (_encoded(s), True)))
    choices += [
        st.sampled_from(RAW_SEGMENTS).map(lambda s: (s, False)),
        hostile_text().map(lambda s: (_encoded(s), False)),
        st.integers(200, 6000).map(lambda n: ("a" * n, False)),
    ]
    return st.one_of(choices)


@st.composite
def _path(draw: st.DrawFn, op: Operation, caller: Caller) -> tuple[str, bool]:
    path, names_other = op.path, False
    for name in op.path_params:
        value, other = draw(_segment(caller, name))
        path = path.replace("{" + name + "}", value, 1)
        names_other = names_other or other
    return path, names_other


def cursor_of(value: Any) -> str:
    """A cursor as the paged lists encode theirs: base64url JSON, unpadded."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile_text(8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text(4), inner, max_size=3),
    max_leaves=8,
)
#: What a cursor may decode to: near the real shapes (one or two ints or strings) or any JSON.
CURSOR_VALUES = (
    st.lists(
        st.integers(-(2**64), 2**64)
        | st.booleans()
        | st.none()
        | st.floats(allow_nan=False)
        | st.datetimes(timezones=st.none() | st.just(UTC)).map(datetime.isoformat)
        | st.sampled_from(["job_x", "", "0"])
        | hostile_text(12),
        max_size=3,
    )
    | JSON_VALUES
)

RAW_QUERY_VALUES = ["%00", "%ff", "%", "a%zzb", "%2C%2C", "..", "a&b", "=", "%3D%26"]
QUERY_VALUES = [
    "",
    "abc",
    "-1",
    "0",
    "1.5",
    "true",
    "1e3",
    "NaN",
    "Infinity",
    "0x10",
    " 5",
    str(10**30),
    "-" + str(10**30),
    "9" * 4000,
    "queued,running,bogus",
    ",".join(["completed"] * 50),
]


def _query_value(caller: Caller, param: dict[str, Any]) -> st.SearchStrategy[str]:
    name = param["name"]
    schema = param.get("schema", {})
    good: list[st.SearchStrategy[str]] = []
    if schema.get("type") == "integer":
        low, high = schema.get("minimum", 0), min(schema.get("maximum", 10**6), 10**6)
        good.append(st.integers(int(low), int(high)).map(str))
    if name == "cursor":
        good.append(JSON_VALUES.map(cursor_of))
        good.append(st.text("ABCDEFabcdef0123456789-_=", max_size=40))
    if name == "ids":
        ids = caller.own.get("job_id", []) + caller.others.get("job_id", []) + RAW_SEGMENTS
        good.append(st.lists(st.sampled_from(ids), max_size=110).map(",".join))
    if name == "project":
        good.append(st.just(caller.project))
    encoded = [_encoded(v) for v in QUERY_VALUES]
    return st.one_of(
        *good,
        st.sampled_from(encoded + RAW_QUERY_VALUES),
        hostile_text(60).map(_encoded),
        st.integers(100, 20_000).map(lambda n: "x" * n),
    )


def every_hostile_parameter(
    op: Operation, caller: Caller
) -> Iterator[tuple[str, list[tuple[bytes, bytes]]]]:
    """(query string, headers) with one declared query or header parameter set to each
    hostile value in turn (required ones otherwise set to the caller's own ids)."""
    own_ids = ",".join(caller.own.get("job_id", []))
    required = {p["name"]: own_ids for p in op.params("query") if p.get("required")}

    def query(**values: str) -> str:
        return "&".join(f"{name}={value}" for name, value in {**required, **values}.items())

    for param in op.params("query"):
        for value in [*(_encoded(v) for v in QUERY_VALUES), *RAW_QUERY_VALUES]:
            yield query(**{param["name"]: value}), []
    for param in op.params("header"):
        name = param["name"]
        values = LAST_EVENT_IDS if name.lower() == "last-event-id" else HEADER_VALUES
        for raw in values:
            yield query(), [(name.encode(), raw)]


@st.composite
def _query(draw: st.DrawFn, op: Operation, caller: Caller) -> str:
    pairs = []
    for param in op.params("query"):
        if param.get("required") or draw(st.booleans()):
            value = draw(_query_value(caller, param))
            pairs += [(param["name"], value)] * draw(st.sampled_from([1, 1, 1, 2]))
    if draw(st.integers(0, 9)) == 0:
        pairs.append((draw(st.sampled_from(["x", "%00", "a%ff", "limit[]", ""])), "1"))
    return "&".join(f"{name}={value}" for name, value in pairs)


AUTH_VARIANTS = [
    b"Bearer",
    b"Bearer ",
    b"Basic dXNlcjpwYXNz",
    b"Token abc",
    b"Bearer flk_not-a-key",
    b"Bearer fls_not-a-session",
    b"Bearer flt_not-a-task-token",
    b"Bearer " + b"A" * 8000,
    b"Bearer \xc3\xa9\xff\xfe",
    b"Bearer ,,,",
    b"Bearer flk_\x7f",
]
HEADER_VALUES = [b"", b"x" * 5000, b"\xff\xfe", b"\xe2\x98\x83", b"-1", b"1e3", b"a b"]
LAST_EVENT_IDS = [b"-1", b"abc", b"1e3", b"", b" 7 ", b"0", b"\xff", b"1.5", b"+3", b"9" * 5000]
LAST_EVENT_IDS += [str(2**62).encode(), str(2**63 - 1).encode(), b"-" + str(2**63).encode()]
#: Past SQLite's (and PostgreSQL's bigint) range: a stream then breaks after its 200 (see
#: test_fuzz_routes.py::test_an_event_id_past_64_bits_is_refused_or_streamed); left out of the
#: fuzz until that is fixed, so the fuzz keeps finding anything else.
OVERFLOWING_EVENT_IDS = [str(2**63).encode(), str(10**30).encode()]
EXTRA_HEADERS = [
    (b"If-Match", b"*"),
    (b"Range", b"bytes=0-1"),
    (b"X-Forwarded-For", b"203.0.113.9"),
    (b"Accept", b"text/html"),
    (b"Accept-Encoding", b"gzip, br"),
    (b"Content-Encoding", b"gzip"),
    (b"Cookie", b"session=" + b"c" * 3000),
    (b"X-Idempotency-Key", b"\xff"),
]


@st.composite
def _headers(draw: st.DrawFn, caller: Caller) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    as_caller = draw(st.sampled_from([True, True, True, True, False]))
    if caller.token is not None and as_caller:
        token = caller.token.encode()
        scheme = draw(st.sampled_from([b"Bearer ", b"bearer ", b"BEARER  "]))
        headers.append((b"Authorization", scheme + token))
    elif draw(st.booleans()):
        revoked = b"Bearer " + caller.revoked_token.encode()
        headers.append((b"Authorization", draw(st.sampled_from([*AUTH_VARIANTS, revoked]))))
    if draw(st.booleans()):
        key = draw(st.sampled_from([*HEADER_VALUES, b"fuzz-key-1"]))
        headers.append((b"Idempotency-Key", key))
    if draw(st.booleans()):
        headers.append((b"Last-Event-ID", draw(st.sampled_from(LAST_EVENT_IDS))))
    if draw(st.integers(0, 3)) == 0:
        headers.append(draw(st.sampled_from(EXTRA_HEADERS)))
    return headers


@st.composite
def fuzz_requests(draw: st.DrawFn, op: Operation, caller: Caller, kind: str) -> FuzzRequest:
    """A request to ``op`` as ``caller`` with a body of ``kind`` (``BODY_KINDS`` for a route
    with a JSON body, else ``STRAY_KINDS``)."""
    path, names_other = draw(_path(op, caller))
    query = draw(_query(op, caller))
    target = (path + ("?" + query if query else "")).encode("latin-1")
    headers = draw(_headers(caller))
    schema = op.body_schema
    if schema is not None:
        body = draw(bodies(kind, schema, op.components, caller.project))
    elif kind == "stray" and op.path.endswith("/push"):
        body = draw(st.one_of(tarball_bodies(), stray_bodies(kind)))
    else:
        body = draw(stray_bodies(kind))
    if body.content_type is not None:
        headers.append((b"Content-Type", body.content_type))
    return FuzzRequest(op.method, target, headers, body, names_other)
