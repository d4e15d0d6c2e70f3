"""Hostile request bodies, drawn from a route's body schema (see tests/support/fuzz_inputs.py).

Each :class:`Body` says whether the route must refuse it (``must_refuse``): nesting past
``MAX_JSON_DEPTH``, NaN / Infinity, and a field of the wrong JSON type or out of its range are
never acceptable, whoever sends them. Everything else (NUL and control characters, lone
surrogates, invalid UTF-8, truncated JSON, other content types, huge values) only has to be
answered without a 5xx and in the envelope.
"""

from __future__ import annotations

import copy
import gzip
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from computalot.jsonsafe import MAX_JSON_DEPTH

JSON = b"application/json"
SLOT = "__fuzz_slot__"
MiB = 1024 * 1024


@dataclass(frozen=True)
class Body:
    data: bytes | None
    content_type: bytes | None
    kind: str
    must_refuse: bool = False


NO_BODY = Body(None, None, "none")


def deep_json(levels: int, shape: str) -> str:
    """JSON text nested ``levels`` deep, cycling ``shape`` ('l' a list, 'o' an object)."""
    opens = "".join("[" if c == "l" else '{"k":' for c in shape)
    closes = "".join("]" if c == "l" else "}" for c in reversed(shape))
    whole, part = divmod(levels, len(shape))
    head = opens * whole + opens[: _width(shape[:part])]
    tail = "".join("]" if c == "l" else "}" for c in reversed(shape[:part])) + closes * whole
    return head + "0" + tail


def _width(shape: str) -> int:
    return sum(1 if c == "l" else 5 for c in shape)


def huge_json(size: int, shape: str) -> str:
    """About ``size`` bytes of JSON text: one long string, a long array, or many keys."""
    if shape == "string":
        return '"' + "x" * size + '"'
    if shape == "array":
        return "[" + "0," * (size // 2 - 1) + "0]"
    n = max(1, size // 12)
    return "{" + ",".join(f'"k{i:08d}":0' for i in range(n)) + "}"


def _types(schema: dict[str, Any]) -> set[str]:
    """The JSON types a schema node allows (empty: anything)."""
    if "$ref" in schema or "properties" in schema:
        return {"object"}
    if "type" in schema:
        return {schema["type"]}
    found: set[str] = set()
    for branch in schema.get("anyOf", []):
        branch_types = _types(branch)
        if not branch_types:
            return set()
        found |= branch_types
    return found


WRONG: dict[str, list[Any]] = {
    "string": [1, 1.5, True, [], {}, None, ["x"], {"x": "y"}],
    "integer": ["1", "10", True, False, 1.5, [], {}, None, "NaN", [1]],
    "number": ["1.5", True, False, [], {}, None, [1.0]],
    "boolean": ["true", 1, 0, None, [], {}, "yes"],
    "array": [{}, "a,b", 1, True, None, {"0": "x"}],
    "object": [[], "x", 1, True, None, [{"k": 1}]],
    "null": [],
}


def _is_type(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    return isinstance(value, dict)


def wrong_values(schema: dict[str, Any]) -> list[Any]:
    """Values of a JSON type the node does not allow, or out of its declared range."""
    allowed = _types(schema)
    if not allowed:
        return []
    out = [v for kind in WRONG for v in WRONG[kind] if not any(_is_type(v, t) for t in allowed)]
    for branch in [schema, *schema.get("anyOf", [])]:
        if "maximum" in branch:
            out.append(10**30)
        if "minimum" in branch or "exclusiveMinimum" in branch:
            out.append(-(10**30))
        if "maxLength" in branch:
            out.append("x" * (int(branch["maxLength"]) + 1))
        if "enum" in branch:
            out += ["NOT-IN-ENUM", str(branch["enum"][0]).upper() + "\x00"]
    return out


def plausible(schema: dict[str, Any], components: dict[str, Any], project: str) -> Any:
    """A body the route would likely accept: required fields with values of the right type."""
    title = schema.get("title")
    job = {"project": project, "runner_command": ["python3", "runner.py"], "timeout_s": 60}
    if title == "JobSubmit":
        return job
    if title == "BatchSubmit":
        return {"jobs": [job]}
    address = "0x" + "11" * 20
    body: dict[str, Any] = {}
    for name in schema.get("required", []):
        node = schema["properties"][name]
        kinds = _types(node)
        if name == "wallet_address":
            body[name] = address
        elif name == "challenge_id":
            body[name] = "wch_fuzz"
        elif "enum" in node:
            body[name] = node["enum"][0]
        elif "number" in kinds or "integer" in kinds:
            body[name] = 1
        elif "array" in kinds:
            body[name] = []
        elif "object" in kinds:
            body[name] = {}
        else:
            body[name] = "fz-" + name.replace("_", "-")
    return body


def fields(
    schema: dict[str, Any], components: dict[str, Any], prefix: tuple[Any, ...] = ()
) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Every declared field (one level into nested models) as (path, schema node)."""
    out = []
    for name, node in schema.get("properties", {}).items():
        out.append(((*prefix, name), node))
        refs = [b["$ref"] for b in [node, *node.get("anyOf", [])] if "$ref" in b]
        if refs and not prefix:
            target = components[refs[0].rsplit("/", 1)[1]]
            out += fields(target, components, (name,))
    if schema.get("title") == "BatchSubmit" and not prefix:
        out += fields(components["JobSubmit"], components, ("jobs", 0))
    return out


def wrong_fields(
    schema: dict[str, Any], components: dict[str, Any]
) -> list[tuple[tuple[Any, ...], Any]]:
    """(field path, value) for every declared field and every value it must refuse, and for
    keys a closed schema does not know (NUL, an unknown name)."""
    out = [(path, v) for path, node in fields(schema, components) for v in wrong_values(node)]
    if schema.get("additionalProperties") is False:
        out += [(("\x00",), 1), (("unknown_field",), 1)]
    return out


def every_wrong_body(
    schema: dict[str, Any], components: dict[str, Any], project: str
) -> Iterator[Body]:
    """A plausible body with one field of :func:`wrong_fields` set, for each of them."""
    base = plausible(schema, components, project)
    for path, value in wrong_fields(schema, components):
        yield Body(_text(_put(base, path, value)), JSON, f"wrong {path}={value!r:.40}", True)


def _put(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    body = copy.deepcopy(body)
    here = body
    for step in path[:-1]:
        if isinstance(here, dict) and not isinstance(here.get(step), dict | list):
            here[step] = {}
        here = here[step]
    here[path[-1]] = value
    return body


def _text(value: Any, slot: str | None = None) -> bytes:
    """``value`` as JSON (non-ASCII escaped, so lone surrogates stay ``\\udXXX``), with the
    string ``SLOT`` replaced by the raw JSON text ``slot``."""
    text = json.dumps(value)
    if slot is not None:
        text = text.replace(json.dumps(SLOT), slot, 1)
    return text.encode("utf-8", "surrogatepass")


def _slotted(schema: dict[str, Any], components: dict[str, Any], project: str) -> Any:
    """A strategy of plausible bodies with ``SLOT`` as one field's value (or the whole body)."""
    base = plausible(schema, components, project)
    paths = [p for p, _ in fields(schema, components)] + [("_fuzz",)]
    return st.one_of(st.just(SLOT), st.sampled_from(paths).map(lambda p: _put(base, p, SLOT)))


HOSTILE_STRINGS = [
    "\x00",
    "a\x00b",
    "\x01\x1f\x7f",
    "\u2028\u2029",
    "\ud800",
    "\udfff\ud800",
    "\ufeff",
    "\u202eevil",
    "💥" * 50,
    "x" * 70_000,
    "sNaN",
    "1E+999999999",
    "0E-999999999",
    "\u0661",
    " 5 ",
]
CONTENT_TYPES = [
    None,
    b"text/plain",
    b"application/x-www-form-urlencoded",
    b"multipart/form-data; boundary=fuzz",
    b"application/json; charset=utf-16",
    b"application/jsonp",
    b"APPLICATION/JSON",
    b"application/json\xff",
    b"application/vnd.api+json",
]
BROKEN = [
    b"",
    b"null",
    b"[]",
    b'"text"',
    b"1",
    b"{",
    b'{"a": 1,}',
    b"{'a': 1}",
    b'{"a": 1} trailing',
    b'{"a": 1 /* comment */}',
    b"\xef\xbb\xbf{}",
    b'{"a": "\xff\xfe"}',
    b'{"a": "\xed\xa0\x80"}',
    b"\xc0\x80",
    b'{"a": 1, "a": 2}',
    b'{"a": 1e999999999999}',
    b'{"a": ' + b"9" * 5000 + b"}",
]
NON_FINITE = ["NaN", "Infinity", "-Infinity"]
#: Numbers that are valid JSON but no float or 64-bit integer.
ODD_NUMBERS = ["-0", "1e-400", "1e400", "-1e400", "123456789012345678901234567890"]


#: What a body drawn for a route with a JSON body is, one test per kind.
BODY_KINDS = ["wrong", "deep", "huge", "text", "tokens", "broken", "ctype"]
#: The same for a route that reads no JSON body.
STRAY_KINDS = ["none", "stray"]
HUGE_SIZES = [64 * 1024, MiB, 4 * MiB]


@st.composite
def bodies(
    draw: st.DrawFn, kind: str, schema: dict[str, Any], components: dict[str, Any], project: str
) -> Body:
    """One hostile body of ``kind`` for a route whose JSON body follows ``schema``
    (``components``: the OpenAPI document's schemas, for nested models)."""
    closed = schema.get("additionalProperties") is False
    base = plausible(schema, components, project)
    if kind == "wrong":
        path, value = draw(st.sampled_from(wrong_fields(schema, components)))
        return Body(_text(_put(base, path, value)), JSON, f"wrong {path}={value!r:.40}", True)
    if kind == "deep":
        levels = draw(st.integers(MAX_JSON_DEPTH + 1, 200_000) | st.sampled_from([101, 200_000]))
        shape = draw(st.text("lo", min_size=1, max_size=6))
        slotted = draw(_slotted(schema, components, project))
        return Body(_text(slotted, deep_json(levels, shape)), JSON, f"deep {levels}", True)
    if kind == "huge":
        size = draw(st.sampled_from(HUGE_SIZES))
        shape = draw(st.sampled_from(["string", "array", "object"]))
        data = _text({"_fuzz": SLOT}, huge_json(size, shape))
        return Body(data, JSON, f"huge {shape} {size}", closed)
    if kind == "text":
        string_fields = [p for p, node in fields(schema, components) if "string" in _types(node)]
        path = draw(st.sampled_from([*string_fields, ("_fuzz",)]))
        value = draw(st.sampled_from(HOSTILE_STRINGS) | st.text(st.characters(), max_size=30))
        key = draw(st.sampled_from([None, "\x00", "\ud800", "k\x01"]))
        body = _put(base, path, value)
        if key is not None:
            body[key] = 1
        raw = draw(st.booleans())
        data = json.dumps(body, ensure_ascii=not raw).encode("utf-8", "surrogatepass")
        return Body(data, JSON, f"text {'raw' if raw else 'escaped'} {path}")
    if kind == "tokens":
        token = draw(
            st.sampled_from([*NON_FINITE, "-0", "1e-400", "123456789012345678901234567890"])
        )
        slotted = draw(_slotted(schema, components, project))
        return Body(_text(slotted, token), JSON, f"token {token}", token in NON_FINITE)
    if kind == "broken":
        good = _text(base)
        cut = draw(st.integers(0, max(0, len(good) - 1)))
        data = draw(st.sampled_from([*BROKEN, good[:cut]]))
        return Body(data, JSON, "broken")
    assert kind == "ctype", kind
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    return Body(_text(base), content_type, f"content-type {content_type!r}")


@st.composite
def stray_bodies(draw: st.DrawFn, kind: str) -> Body:
    """What a route that reads no JSON body may still be sent: nothing, or a stray body."""
    if kind == "none":
        return NO_BODY
    deep = deep_json(draw(st.sampled_from([101, 100_000])), "lo").encode()
    data = draw(st.sampled_from([deep, *BROKEN]))
    return Body(data, draw(st.sampled_from(CONTENT_TYPES)), "stray")


def _tarball(names: list[str], data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@st.composite
def tarball_bodies(draw: st.DrawFn) -> Body:
    """A push body (a gzip'd tar): cut short, not gzip, gzip of no tar, or members named with
    any text (``..``, absolute, control characters, very long)."""
    names = st.lists(
        st.sampled_from(["../up", "/abs", "a/../../b", "x" * 300, "ok.py"])
        | st.text(st.characters(exclude_characters="\x00"), min_size=1),
        min_size=1,
        max_size=4,
    )
    whole = _tarball(draw(names), draw(st.binary(max_size=64)))
    data = draw(
        st.sampled_from([whole, gzip.compress(b"not a tar" * 100), b"\x1f\x8b" + b"\x00" * 20])
        | st.integers(0, len(whole)).map(lambda cut: whole[:cut])
        | st.binary(max_size=512)
    )
    content_type = draw(st.sampled_from([b"application/gzip", b"application/octet-stream", None]))
    return Body(data, content_type, "tarball")
