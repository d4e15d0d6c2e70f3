"""Every 402 of the API is payable by a stock x402 client that resends the request paid
(docs/llms-full.md, "Billing"): init's funds rule (available < $5) and a submit whose hold the
balance cannot cover. Real HTTP, real Ray, the ``x402`` SDK signing with an eth-account key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from eth_account import Account
from x402 import x402Client
from x402.http.clients.httpx import x402AsyncTransport
from x402.http.utils import decode_payment_required_header
from x402.mechanisms.evm.exact.register import register_exact_evm_client

from tests.support.helpers import assert_envelope, wait_job

RUNNER = r"""
import json, os
json.dump({"ok": True}, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))
"""


def paying_client(platform: Any, token: str) -> httpx.AsyncClient:
    """An httpx client wrapped by the x402 SDK's transport: it pays any 402 and resends."""
    client = x402Client()
    client.set_spend_controls(False)
    register_exact_evm_client(client, Account.create())
    return httpx.AsyncClient(
        base_url=platform.url,
        headers={"Authorization": f"Bearer {token}"},
        transport=x402AsyncTransport(client, httpx.AsyncHTTPTransport()),
        timeout=120,
    )


def balance_of(client: httpx.Client) -> float:
    answer = client.get("/api/v1/account/balance")
    assert answer.status_code == 200, answer.text
    return float(answer.json()["available_usd"])


def test_init_below_five_dollars_is_402_with_a_quote_for_the_difference(
    new_account: Callable[..., httpx.Client], make_project: Any
) -> None:
    poor = new_account(credit_usd=1.5)
    name = make_project(poor, {"runner.py": RUNNER})
    answer = poor.post(f"/api/v1/projects/{name}/init", json={})
    err = assert_envelope(answer, 402, "payment_required")
    assert err["details"][0]["loc"] == ["available_usd"]
    assert err["details"][0]["available_usd"] == 1.5
    quote = answer.json()["quote"]
    assert (quote["kind"], quote["amount_usd"], quote["status"]) == ("init", 3.5, "open")
    required = decode_payment_required_header(answer.headers["PAYMENT-REQUIRED"])
    assert required.accepts[0].amount == "3500000"
    assert_envelope(poor.post("/api/v1/projects/nope/init", json={}), 404, "not_found")


def test_init_with_five_dollars_passes_the_funds_rule_and_costs_nothing(
    new_account: Callable[..., httpx.Client], make_project: Any
) -> None:
    rich = new_account(credit_usd=5)
    name = make_project(rich, {"runner.py": RUNNER})
    answer = rich.post(f"/api/v1/projects/{name}/init", json={})
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] in ("initializing", "ready")
    assert rich.get("/api/v1/account/quotes").json()["quotes"] == []
    assert balance_of(rich) == 5.0


async def test_a_stock_client_pays_inits_402_and_the_resend_passes_the_funds_rule(
    platform: Any, new_account: Callable[..., httpx.Client], make_project: Any
) -> None:
    poor = new_account(credit_usd=None)
    name = make_project(poor, {"runner.py": RUNNER})
    async with paying_client(platform, poor.token) as paying:  # type: ignore[attr-defined]
        answer = await paying.post(f"/api/v1/projects/{name}/init", json={})
    assert answer.status_code == 202, answer.text
    assert "PAYMENT-RESPONSE" in answer.headers
    assert balance_of(poor) == 5.0
    quotes = poor.get("/api/v1/account/quotes").json()["quotes"]
    assert [(q["kind"], q["status"]) for q in quotes] == [("init", "paid")]


@pytest.mark.timeout(300)
async def test_a_stock_client_pays_a_submits_shortfall_and_the_job_runs(
    platform: Any, new_account: Callable[..., httpx.Client], make_project: Any
) -> None:
    poor = new_account(credit_usd=None)
    name = make_project(poor, {"runner.py": RUNNER})
    job = {"project": name, "runner_command": ["python3", "runner.py"], "timeout_s": 60}
    refused = poor.post("/api/v1/jobs", json=job)
    assert_envelope(refused, 402, "payment_required")
    assert refused.json()["quote"]["kind"] == "shortfall"
    assert poor.get("/api/v1/jobs").json()["jobs"] == []
    async with paying_client(platform, poor.token) as paying:  # type: ignore[attr-defined]
        answer = await paying.post("/api/v1/jobs", json=job)
    assert answer.status_code == 201, answer.text
    assert "PAYMENT-RESPONSE" in answer.headers
    done = wait_job(poor, answer.json()["id"])
    assert done["status"] == "completed", done
    kinds = [(q["kind"], q["status"]) for q in poor.get("/api/v1/account/quotes").json()["quotes"]]
    assert kinds == [("shortfall", "paid"), ("shortfall", "open")]
