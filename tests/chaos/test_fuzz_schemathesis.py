"""schemathesis against the running platform's ``/openapi.json`` (issue #19, item 6c; docs/chaos.md).

Every operation of the document the server serves gets requests that schemathesis generates
from its schema, valid ones (positive) and ones that break it (negative), sent over real HTTP
through Serve's ingress with a member's key and with an admin's key (fresh accounts of this
module). Rounds go on until the suite's request budget is sent: ~300 in the normal test command,
2,000 or more under ``CHAOS=long``. Every answer must be under 500 and no body may carry a
traceback (docs/llms-full.md, "Errors"); the figures (requests, status histogram) are printed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.support.chaos import LONG, report, size

TARGET = size(300, 2000)
#: A stream that answers 200 is read this long, then closed (it would never end by itself).
STREAM_READ_S = 0.5
MAX_BODY = 1 << 20
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/')

pytestmark = pytest.mark.timeout(1800 if LONG else 300)


@dataclass
class Tally:
    """What was sent and what came back."""

    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)
    findings: list[str] = field(default_factory=list)
    unsendable: int = 0


@pytest.fixture(scope="module")
def callers(new_account: Any) -> dict[str, str]:
    """A member's and an admin's key, of accounts made for this module."""
    return {role: new_account(role).token for role in ("member", "admin")}


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def read_body(answer: requests.Response) -> bytes:
    """The body, or its first moments for an event stream that answered 200."""
    if answer.headers.get("content-type", "").startswith("text/event-stream"):
        # A quiet stream sends its next bytes only at its heartbeat: no read waits for that.
        sock = getattr(getattr(answer.raw, "connection", None), "sock", None)
        if sock is not None:
            sock.settimeout(STREAM_READ_S)
        chunks, deadline = [], time.monotonic() + STREAM_READ_S
        try:
            for chunk in answer.iter_content(chunk_size=None):
                chunks.append(chunk)
                if time.monotonic() > deadline or sum(map(len, chunks)) > MAX_BODY:
                    break
        except (requests.RequestException, OSError):
            pass  # the read timed out: what came so far is the body
        return b"".join(chunks)
    return answer.content[:MAX_BODY]


def send(
    case: Any, base_url: str, token: str, s: requests.Session, tally: Tally, label: str
) -> None:
    try:
        kwargs = case.as_transport_kwargs(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}
        )
    except Exception:  # a generated body that cannot be serialized is not sent
        tally.unsendable += 1
        return
    kwargs.pop("timeout", None)
    began = time.monotonic()
    try:
        answer = s.request(**kwargs, timeout=(10, 30), stream=True, allow_redirects=False)
    except requests.RequestException as exc:
        tally.sent += 1
        tally.findings.append(f"{label}: no answer ({type(exc).__name__}: {exc})"[:300])
        return
    with answer:
        body = read_body(answer)
    tally.seconds[label] += time.monotonic() - began
    tally.sent += 1
    tally.statuses[answer.status_code] += 1
    tally.by_operation[label] += 1
    text = body.decode("utf-8", "replace")
    if answer.status_code >= 500:
        tally.findings.append(
            f"{label}: {answer.status_code} {text[:200]!r} <- {case.as_curl_command()}"
        )
    if any(marker in text for marker in TRACEBACK_MARKERS):
        tally.findings.append(f"{label}: a traceback in the body <- {case.as_curl_command()}")


def fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    round_no: int,
    examples: int,
    run: Any,
) -> None:
    """Draw up to ``examples`` cases of one operation in one mode and send each with ``run``."""

    @hypothesis_seed(round_no)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def draw(case: Any) -> None:
        run(case)

    try:
        draw()
    except Unsatisfiable:
        pass  # nothing to break in this operation's schema (negative mode, no parameters)


def test_schemathesis_finds_no_5xx_and_no_traceback(
    platform: Any, callers: dict[str, str], session: requests.Session
) -> None:
    document = httpx.get(f"{platform.url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30, "the served document lists the platform's routes"
    tally = Tally()
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    # Drawing costs more than sending (most of a negative case's time is hypothesis looking for
    # one): each case drawn is sent with every caller's key.
    per_draw = max(2, TARGET // (len(operations) * len(callers) * len(modes)) + 1)
    round_no = 0
    started = time.monotonic()
    while tally.sent < TARGET:
        round_no += 1
        for operation in operations:
            label = f"{operation.method.upper()} {operation.path}"
            for mode in modes:

                def run(case: Any, label: str = label) -> None:
                    for role, token in callers.items():
                        send(case, platform.url, token, session, tally, f"{label} [{role}]")

                fuzz_operation(operation, mode, round_no, per_draw, run)
        assert round_no < 50, f"only {tally.sent} requests after {round_no} rounds"
    elapsed = time.monotonic() - started
    report(
        "schemathesis against /openapi.json",
        {
            "operations": len(operations),
            "callers": ", ".join(callers),
            "rounds": round_no,
            "requests sent": tally.sent,
            "generated but unsendable": tally.unsendable,
            "status histogram": dict(sorted(tally.statuses.items())),
            "5xx or traceback findings": len(tally.findings),
            "seconds": round(elapsed, 1),
            "slowest operations (s)": {k: round(v, 1) for k, v in tally.seconds.most_common(4)},
        },
    )
    assert tally.sent >= TARGET
    assert not tally.findings, "\n".join(tally.findings[:20])
    assert httpx.get(f"{platform.url}/health", timeout=10).status_code == 200
