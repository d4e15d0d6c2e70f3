"""The running platform's ingress (Ray Serve's HAProxy) answers in the error envelope.

Over-long heads used to get HAProxy's HTML 400 page; now they are 414/431 envelopes, and what
fits is the app's to answer. What HAProxy 2.8's parser refuses before any rule runs (a request
that is not HTTP) is still its own page: asserted as a 400, whatever its body.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from computalot.ingress import MARKER, real_haproxy
from computalot.ingress_pages import MAX_HEADER_BYTES, MAX_URL_BYTES
from computalot.platform import haproxy_dir
from tests.support.raw_http import exchange, request

API = "/api/v1"


def _port(platform: Any) -> int:
    return int(urlsplit(platform.url).port or 80)


def test_a_60_kb_authorization_header_is_431_in_the_envelope(platform: Any) -> None:
    big = {"Authorization": "Bearer flk_" + "a" * 60_000}
    answer = exchange(_port(platform), request("GET", f"{API}/account", big))
    assert answer.status == 431
    error = answer.envelope()
    assert error["code"] == "headers_too_large" and f"{MAX_HEADER_BYTES:,}" in error["message"]


def test_watching_5000_jobs_is_414_in_the_envelope(platform: Any) -> None:
    ids = ",".join(f"job_{n:022d}" for n in range(5000))
    token = {"Authorization": f"Bearer {platform.admin_key}"}
    answer = exchange(_port(platform), request("GET", f"{API}/jobs/watch?ids={ids}", token))
    assert answer.status == 414
    error = answer.envelope()
    assert error["code"] == "uri_too_long" and "100 ids" in error["recommended_action"]


def test_heads_within_the_limits_reach_the_app(admin: httpx.Client, anon: httpx.Client) -> None:
    ids = ",".join(f"job_{n:022d}" for n in range(101))  # 2.7 KB: the app's own limit answers
    assert len(ids) < MAX_URL_BYTES
    watch = admin.get(f"{API}/jobs/watch", params={"ids": ids})
    assert watch.status_code in (400, 422), watch.text
    assert watch.json()["error"]["code"] in ("bad_request", "validation_error")
    padded = anon.get(f"{API}/account", headers={"Authorization": "Bearer " + "b" * 15_000})
    assert padded.status_code == 401 and padded.json()["error"]["code"] == "unauthorized"


def test_a_path_no_app_serves_is_a_404_envelope(platform: Any) -> None:
    answer = exchange(_port(platform), request("OPTIONS", "*"))
    assert answer.status == 404 and answer.envelope()["code"] == "not_found"


def test_a_request_that_is_not_http_is_refused(platform: Any) -> None:
    answer = exchange(_port(platform), b"GARBAGE\r\n\r\n")
    assert answer.status == 400
    if answer.headers.get("content-type", "").startswith("application/json"):
        assert answer.envelope()["code"] == "bad_request"  # HAProxy >= 3.3 uses our errorfile


def test_the_live_config_carries_the_additions_and_is_valid(platform: Any) -> None:
    configs = list(Path(haproxy_dir(platform.settings)).glob("*/haproxy.cfg"))
    assert configs, "Serve wrote no HAProxy config under the platform's folder"
    for config in configs:
        assert MARKER in config.read_text()
        checked = subprocess.run(
            [real_haproxy(), "-c", "-f", str(config)], capture_output=True, text=True, timeout=60
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
