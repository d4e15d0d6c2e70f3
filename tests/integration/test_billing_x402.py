"""x402 top-ups over real HTTP (docs/llms-full.md, "Billing"): a stock x402 client (the ``x402``
SDK, signing with an eth-account key) pays our 402s; replays, under-payments, wrong addresses,
expired authorisations and bad signatures are refused with nothing credited; the ledger holds
exactly one credit per payment, even when two requests carry one payload at the same moment.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from eth_account import Account
from sqlalchemy import create_engine, select, update
from sqlalchemy.engine import Engine
from x402 import x402Client, x402ClientSync
from x402.http.clients.httpx import x402AsyncTransport
from x402.http.utils import (
    decode_payment_required_header,
    decode_payment_response_header,
    encode_payment_signature_header,
)
from x402.mechanisms.evm.exact.register import register_exact_evm_client

from computalot.store.models import LedgerEntry, Quote, X402Payment
from tests.support.helpers import assert_envelope

TOPUP = "/api/v1/account/quotes/topup"


@pytest.fixture(scope="module")
def db(platform: Any) -> Iterator[Engine]:
    """The platform's store, read (and, to expire a quote, written) from the test."""
    url = platform.settings.resolved_database_url.replace("sqlite+aiosqlite://", "sqlite://")
    engine = create_engine(url, connect_args={"timeout": 30})
    yield engine
    engine.dispose()


def credits(db: Engine, account_id: str) -> list[LedgerEntry]:
    with db.connect() as conn:
        query = select(LedgerEntry).where(
            LedgerEntry.account_id == account_id, LedgerEntry.kind == "credit"
        )
        return list(conn.execute(query).all())


def signer(account: Any = None) -> x402ClientSync:
    client = x402ClientSync()
    client.set_spend_controls(False)
    register_exact_evm_client(client, account or Account.create())
    return client


def payment_for(answer: httpx.Response, account: Any = None, **changes: Any) -> str:
    """A ``PAYMENT-SIGNATURE`` value made by the x402 SDK from a 402's ``PAYMENT-REQUIRED``
    header (``changes`` alter the requirement the client signs)."""
    required = decode_payment_required_header(answer.headers["PAYMENT-REQUIRED"])
    if changes:
        accept = required.accepts[0].model_copy(update=changes)
        required = required.model_copy(update={"accepts": [accept]})
    payload = signer(account).create_payment_payload(required)
    return encode_payment_signature_header(payload)


def topup(client: httpx.Client, amount: float = 2.5) -> httpx.Response:
    answer = client.post(TOPUP, json={"amount_usd": amount})
    assert_envelope(answer, 402, "payment_required")
    return answer


def pay(client: httpx.Client, quote_id: str, value: str, header: str = "PAYMENT-SIGNATURE"):
    return client.post(f"/api/v1/account/quotes/{quote_id}/pay/x402", headers={header: value})


@pytest.fixture
def member(new_account: Callable[..., httpx.Client]) -> httpx.Client:
    return new_account(credit_usd=None)


def test_topup_402_carries_the_quote_and_x402_requirements(member: httpx.Client) -> None:
    answer = topup(member, 12.5)
    body = answer.json()
    quote = body["quote"]
    assert quote["id"].startswith("quote_") and quote["kind"] == "topup"
    assert (quote["status"], quote["amount_usd"]) == ("open", 12.5)
    assert body["x402Version"] == 2
    accept = body["accepts"][0]
    assert accept["scheme"] == "exact" and accept["network"] == "eip155:84532"
    assert accept["asset"] == "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
    assert accept["amount"] == accept["maxAmountRequired"] == "12500000"
    assert accept["resource"].endswith(f"/api/v1/account/quotes/{quote['id']}/pay/x402")
    assert accept["extra"] == {"name": "USDC", "version": "2", "quoteId": quote["id"]}
    header = decode_payment_required_header(answer.headers["PAYMENT-REQUIRED"])
    assert header.accepts[0].amount == "12500000"
    assert header.accepts[0].pay_to == accept["payTo"]
    listed = member.get("/api/v1/account/quotes").json()["quotes"]
    assert [q["id"] for q in listed] == [quote["id"]]


async def test_a_stock_x402_client_pays_a_topup_and_its_replay_is_refused(
    platform: Any, new_account: Callable[..., httpx.Client], db: Engine
) -> None:
    member = new_account(credit_usd=None)
    payer = Account.create()
    client = x402Client()
    client.set_spend_controls(False)
    register_exact_evm_client(client, payer)
    sent: list[str] = []

    class Recording(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if "PAYMENT-SIGNATURE" in request.headers:
                sent.append(request.headers["PAYMENT-SIGNATURE"])
            return await super().handle_async_request(request)

    headers = {"Authorization": f"Bearer {member.token}"}  # type: ignore[attr-defined]
    async with httpx.AsyncClient(
        base_url=platform.url,
        headers=headers,
        transport=x402AsyncTransport(client, Recording()),
        timeout=60,
    ) as paying:
        answer = await paying.post(TOPUP, json={"amount_usd": 3.25})
    assert answer.status_code == 200, answer.text
    receipt = answer.json()
    assert receipt["quote"]["status"] == "paid"
    assert receipt["quote"]["payer"] == payer.address.lower()
    assert receipt["ledger_entry"]["kind"] == "credit"
    assert receipt["ledger_entry"]["amount_usd"] == 3.25
    assert payer.address.lower() in receipt["ledger_entry"]["memo"]
    settled = decode_payment_response_header(answer.headers["PAYMENT-RESPONSE"])
    assert settled.success and settled.amount == "3250000"
    account_id = member.account["id"]  # type: ignore[attr-defined]
    assert [Decimal(str(c.amount_usd)) for c in credits(db, account_id)] == [Decimal("3.25")]
    # The very same payload, replayed to the quote it paid and through a fresh top-up's retry.
    assert len(sent) == 1
    quote_id = receipt["quote"]["id"]
    replay = pay(member, quote_id, sent[0])
    err = assert_envelope(replay, 402, "payment_required")
    assert err["details"][0]["reason"] == "invalid_exact_evm_nonce_already_used"
    assert replay.json()["x402Error"] == "invalid_exact_evm_nonce_already_used"
    again = member.post(TOPUP, json={"amount_usd": 3.25}, headers={"PAYMENT-SIGNATURE": sent[0]})
    assert_envelope(again, 402, "payment_required")
    other_quote = topup(member, 3.25).json()["quote"]["id"]
    elsewhere = pay(member, other_quote, sent[0])
    err = assert_envelope(elsewhere, 402, "payment_required")
    assert err["details"][0]["reason"] == "invalid_exact_evm_nonce_already_used"
    assert len(credits(db, account_id)) == 1


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"amount": "2499999"}, "invalid_exact_evm_payload_authorization_value_mismatch"),
        (
            {"pay_to": "0x2222222222222222222222222222222222222222"},
            "invalid_exact_evm_payload_recipient_mismatch",
        ),
        ({"max_timeout_seconds": -5}, "invalid_exact_evm_payload_authorization_valid_before"),
        ({"network": "eip155:8453"}, "network_mismatch"),
    ],
    ids=["under-paying", "wrong-pay-to", "expired-authorization", "wrong-chain"],
)
def test_a_bad_payment_is_402_with_its_reason_and_credits_nothing(
    member: httpx.Client, db: Engine, changes: dict[str, Any], reason: str
) -> None:
    offer = topup(member)
    quote_id = offer.json()["quote"]["id"]
    answer = pay(member, quote_id, payment_for(offer, **changes))
    err = assert_envelope(answer, 402, "payment_required")
    assert err["details"][0]["reason"] == reason, err
    assert "nothing was credited" in err["recommended_action"]
    # Fresh requirements come back, and the quote stays payable.
    again = decode_payment_required_header(answer.headers["PAYMENT-REQUIRED"])
    assert again.error == reason and again.accepts[0].extra["quoteId"] == quote_id
    assert credits(db, member.account["id"]) == []  # type: ignore[attr-defined]
    assert pay(member, quote_id, payment_for(offer)).status_code == 200


def test_a_tampered_signature_is_refused(member: httpx.Client, db: Engine) -> None:
    offer = topup(member)
    payload = json.loads(base64.b64decode(payment_for(offer)))
    sig = payload["payload"]["signature"]
    payload["payload"]["signature"] = sig[:20] + ("a" if sig[20] != "a" else "b") + sig[21:]
    forged = base64.b64encode(json.dumps(payload).encode()).decode()
    answer = pay(member, offer.json()["quote"]["id"], forged)
    err = assert_envelope(answer, 402, "payment_required")
    assert err["details"][0]["reason"] == "invalid_exact_evm_payload_signature"
    assert credits(db, member.account["id"]) == []  # type: ignore[attr-defined]


def test_paying_a_paid_or_expired_quote_is_409_and_another_accounts_is_404(
    member: httpx.Client, new_account: Callable[..., httpx.Client], db: Engine
) -> None:
    offer = topup(member)
    quote_id = offer.json()["quote"]["id"]
    assert pay(member, quote_id, payment_for(offer), header="X-PAYMENT").status_code == 200
    second = pay(member, quote_id, payment_for(offer))
    assert assert_envelope(second, 409, "conflict")["details"][0]["status"] == "paid"

    stale = topup(member)
    stale_id = stale.json()["quote"]["id"]
    with db.begin() as conn:
        past = datetime.now(UTC) - timedelta(seconds=1)
        conn.execute(update(Quote).where(Quote.id == stale_id).values(expires_at=past))
    expired = pay(member, stale_id, payment_for(stale))
    assert assert_envelope(expired, 409, "conflict")["details"][0]["status"] == "expired"
    listed = {q["id"]: q["status"] for q in member.get("/api/v1/account/quotes").json()["quotes"]}
    assert (listed[quote_id], listed[stale_id]) == ("paid", "expired")

    other = new_account(credit_usd=None)
    fresh = topup(member)
    stolen = pay(other, fresh.json()["quote"]["id"], payment_for(fresh))
    assert_envelope(stolen, 404, "not_found")
    assert len(credits(db, member.account["id"])) == 1  # type: ignore[attr-defined]
    assert credits(db, other.account["id"]) == []  # type: ignore[attr-defined]


def test_unreadable_or_missing_payment_headers(member: httpx.Client) -> None:
    offer = topup(member)
    quote_id = offer.json()["quote"]["id"]
    garbage = pay(member, quote_id, "not base64 at all")
    assert assert_envelope(garbage, 400, "bad_request")["details"][0]["loc"] == [
        "header",
        "PAYMENT-SIGNATURE",
    ]
    missing = member.post(f"/api/v1/account/quotes/{quote_id}/pay/x402")
    assert_envelope(missing, 402, "payment_required")
    assert missing.json()["quote"]["id"] == quote_id
    assert "PAYMENT-REQUIRED" in missing.headers
    bad_amount = member.post(TOPUP, json={"amount_usd": -1})
    assert assert_envelope(bad_amount, 422, "validation_error")["details"][0]["loc"] == [
        "amount_usd"
    ]


def test_two_requests_with_one_payload_at_once_credit_once(
    platform: Any, member: httpx.Client, db: Engine
) -> None:
    account_id = member.account["id"]  # type: ignore[attr-defined]
    headers = {"Authorization": f"Bearer {member.token}"}  # type: ignore[attr-defined]
    rounds = 5
    for _ in range(rounds):
        offer = topup(member, 1.0)
        quote_id = offer.json()["quote"]["id"]
        value = payment_for(offer)
        gate = threading.Barrier(2)
        statuses: list[int] = []

        def send(
            value: str = value,
            quote_id: str = quote_id,
            gate: Any = gate,
            statuses: list[int] = statuses,
        ) -> None:
            with httpx.Client(base_url=platform.url, headers=headers, timeout=60) as client:
                gate.wait()
                statuses.append(pay(client, quote_id, value).status_code)

        threads = [threading.Thread(target=send) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [200, 402], statuses
    assert len(credits(db, account_id)) == rounds
    with db.connect() as conn:
        rows = conn.execute(select(X402Payment).where(X402Payment.account_id == account_id))
        assert len(rows.all()) == rounds


def test_quotes_are_paged_newest_first(member: httpx.Client) -> None:
    made = [topup(member, 1 + i).json()["quote"]["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = member.get("/api/v1/account/quotes", params=params).json()
        seen += [q["id"] for q in page["quotes"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == made[::-1]
    bad = member.get("/api/v1/account/quotes", params={"cursor": "nope"})
    assert_envelope(bad, 400, "bad_request")


def test_the_sdk_raises_payment_required_with_the_quote_and_pays_it(
    platform: Any, member: httpx.Client, db: Engine
) -> None:
    from computalot import ComputalotClient
    from computalot.sdk.errors import PaymentRequired

    sdk = ComputalotClient(controller_url=platform.url, token=member.token)  # type: ignore[attr-defined]
    with pytest.raises(PaymentRequired) as raised:
        sdk.topup_quote(4)
    quote = raised.value.quote
    assert quote is not None and quote["amount_usd"] == 4.0
    requirements = raised.value.payment_requirements
    assert requirements is not None and requirements["accepts"][0]["amount"] == "4000000"
    answer = httpx.Response(402, headers=raised.value.headers)
    receipt = sdk.pay_quote_x402(quote["id"], payment_for(answer))
    assert receipt["quote"]["status"] == "paid"
    assert receipt["ledger_entry"]["amount_usd"] == 4.0
    assert len(credits(db, member.account["id"])) == 1  # type: ignore[attr-defined]
