"""The public routes that write (feedback, wallet challenge) have a budget per client address,
and the address is the real client's behind the ingress (docs/operating.md, "Stopping and
restarting"; 429 ``rate_limited`` with Retry-After, docs/llms-full.md "Errors").

Over real HTTP through the session platform (HAProxy ingress -> Serve replica): two clients
bound to two loopback addresses; one spends its budget while claiming other addresses in
``X-Forwarded-For`` (and the ingress's own header), which must not help; the other is not
affected. The trust rule itself (a forwarded address counts only next to the ingress token) is
checked on the function for a client that reaches the app directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from computalot.ingress import INGRESS_HEADER
from serve_app.client_address import client_address

CHALLENGE = "/api/v1/auth/wallet/challenge"
FEEDBACK = "/api/v1/feedback"
WALLET = "0x" + "ab" * 20
#: Neither is 127.0.0.1, where the rest of the session's tests come from.
SPENDER, BYSTANDER = "127.0.0.3", "127.0.0.5"


def _client(base_url: str, local_address: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=local_address)
    return httpx.Client(base_url=base_url, transport=transport, timeout=60)


@pytest.fixture
def spender(base_url: str) -> Iterator[httpx.Client]:
    with _client(base_url, SPENDER) as client:
        yield client


@pytest.fixture
def bystander(base_url: str) -> Iterator[httpx.Client]:
    with _client(base_url, BYSTANDER) as client:
        yield client


def _feedback(title: str) -> dict[str, str]:
    return {"type": "bug", "title": title, "description": "rate limit test"}


def test_the_budget_follows_the_real_client_address(
    platform: Any, spender: httpx.Client, bystander: httpx.Client
) -> None:
    limit = platform.settings.anon_rate_limit_per_minute

    def spoofed(i: int) -> int:
        # Unreadable bodies count too; every request claims another client.
        headers = {"X-Forwarded-For": f"10.9.{i // 250}.{i % 250}", INGRESS_HEADER: "guess"}
        return spender.post(CHALLENGE, json={}, headers=headers).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(spoofed, range(limit)))
    assert statuses == [422] * limit

    for path, body in (
        (FEEDBACK, _feedback("over budget")),
        (CHALLENGE, {"wallet_address": WALLET}),
    ):
        answer = spender.post(path, json=body, headers={"X-Forwarded-For": BYSTANDER})
        assert answer.status_code == 429, answer.text
        assert answer.json()["error"]["code"] == "rate_limited"
        assert "recommended_action" in answer.json()["error"]
        assert 1 <= int(answer.headers["Retry-After"]) <= 60

    # Another address has its own budget, spent by nobody else's requests.
    assert bystander.post(FEEDBACK, json=_feedback("still welcome")).status_code == 201
    challenge = bystander.post(CHALLENGE, json={"wallet_address": WALLET})
    assert challenge.status_code == 200, challenge.text
    assert challenge.json()["challenge"]["id"].startswith("wch_")


def _request(peer: str, headers: dict[str, str]) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "path": FEEDBACK,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": (peer, 40000),
    }
    return Request(scope)


def test_a_forwarded_address_counts_only_from_the_ingress() -> None:
    token = "0123456789abcdef0123456789abcdef"
    ingress = {INGRESS_HEADER: token, "X-Forwarded-For": "203.0.113.7"}
    assert client_address(_request("127.0.0.1", ingress), token) == "203.0.113.7"
    # A client reaching a replica directly: its own address, whatever it claims.
    assert client_address(_request("198.51.100.2", {"X-Forwarded-For": "1.2.3.4"}), token) == (
        "198.51.100.2"
    )
    wrong = {INGRESS_HEADER: "0" * 32, "X-Forwarded-For": "1.2.3.4"}
    assert client_address(_request("198.51.100.2", wrong), token) == "198.51.100.2"
    # The app under plain uvicorn (no ingress token): never trusted.
    assert client_address(_request("198.51.100.2", ingress), None) == "198.51.100.2"
    not_an_address = {INGRESS_HEADER: token, "X-Forwarded-For": "<script>"}
    assert client_address(_request("127.0.0.1", not_an_address), token) == "127.0.0.1"
