"""What every answer to a fuzzed request must be (tests/integration/test_fuzz_routes.py)."""

from __future__ import annotations

import json
from typing import Any

from tests.support.fuzz_http import Exchange
from tests.support.fuzz_inputs import FuzzRequest

ENVELOPE_KEYS = {"code", "message", "details", "recommended_action"}


def _refuse(value: str) -> Any:
    raise AssertionError(f"an answer carries {value}, which is not JSON")


def strict_json(answer: Exchange) -> Any:
    return json.loads(answer.body, parse_constant=_refuse)


def assert_envelope(answer: Exchange, what: str) -> dict[str, Any]:
    """The error envelope: a JSON body ``{"error": {code, message, details, recommended_action}}``."""
    assert answer.content_type == "application/json", f"not JSON: {answer.body[:500]!r}\n{what}"
    error = strict_json(answer)["error"]
    assert set(error) >= ENVELOPE_KEYS, f"{error}\n{what}"
    assert isinstance(error["code"], str) and error["code"], f"{error}\n{what}"
    assert isinstance(error["message"], str) and error["message"], f"{error}\n{what}"
    assert isinstance(error["details"], list), f"{error}\n{what}"
    assert isinstance(error["recommended_action"], str), f"{error}\n{what}"
    return dict(error)


#: Routes documented as not built past their checks (docs/llms-full.md): once every check
#: passes they answer 501 ``not_implemented`` in the envelope, deliberately, not as a crash.
NOT_BUILT = frozenset({"/api/v1/projects/{name}/init"})


def check(answer: Exchange, request: FuzzRequest, path: str) -> None:
    """Under 500 and no traceback; a redirect names where; an error is in the envelope; a 2xx
    is strict JSON (no NaN) and never accepts a body the route must refuse or another
    account's object (``path`` is the route's template: admin routes act on any account)."""
    what = request.describe()
    assert not answer.failure, f"no HTTP answer ({answer.failure})\n{what}"
    if answer.status == 501 and path in NOT_BUILT:
        assert assert_envelope(answer, what)["code"] == "not_implemented", what
        return
    assert answer.status < 500, f"{answer.status}: {answer.body[:3000]!r}\n{what}"
    assert b"Traceback" not in answer.body, f"{answer.body[:3000]!r}\n{what}"
    if 300 <= answer.status < 400:
        assert "location" in answer.headers, f"{answer.status} without Location\n{what}"
    elif answer.status >= 400 and request.method != "HEAD":
        assert_envelope(answer, what)
    elif answer.status < 300:
        if answer.content_type == "application/json" and request.method != "HEAD":
            body = strict_json(answer)
            if path == "/api/v1/jobs/batch" and request.body.must_refuse:
                refused = [set(job) == {"error"} for job in body["jobs"]]
                assert all(refused), f"a refused job was made: {body}\n{what}"
                return
        assert not request.body.must_refuse, f"accepted ({answer.status})\n{what}"
        admin_route = path.startswith("/api/v1/admin/")
        assert admin_route or not request.names_other, f"another account's object\n{what}"
