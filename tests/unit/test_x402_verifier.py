"""The built-in x402 verifier and the remote facilitator client (docs/llms-full.md, "Billing").

Payments are made the way a client makes them: the x402 SDK's own ``ExactEvmScheme`` signs an
EIP-3009 authorisation with an eth-account key, from the requirements our 402 advertises.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from eth_account import Account
from x402 import x402ClientSync
from x402.http.utils import decode_payment_required_header, encode_payment_signature_header
from x402.mechanisms.evm.exact.register import register_exact_evm_client
from x402.schemas import PaymentRequired as X402PaymentRequired

from computalot.billing import x402
from computalot.billing.facilitator import (
    ERR_ASSET,
    ERR_FACILITATOR,
    ERR_NETWORK,
    ERR_PAYLOAD,
    ERR_RECIPIENT,
    ERR_SIGNATURE,
    ERR_VALID_AFTER,
    ERR_VALID_BEFORE,
    ERR_VALUE,
    BuiltinFacilitator,
    RemoteFacilitator,
    facilitator_for,
)
from computalot.errors import PaymentRequired
from computalot.settings import load_settings

SETTINGS = load_settings(x402_pay_to="0x1111111111111111111111111111111111111111")


def requirements(amount: str = "2500000", quote_id: str = "quote_x") -> dict[str, Any]:
    return x402.requirements(
        SETTINGS,
        quote_id=quote_id,
        amount_atomic=amount,
        network=SETTINGS.x402_network,
        asset=SETTINGS.x402_asset,
        pay_to=SETTINGS.x402_pay_to,
        description="test quote",
    )


def sign(reqs: dict[str, Any], account: Any = None, **changes: Any) -> dict[str, Any]:
    """An x402 payment payload made by the stock SDK client for ``reqs`` (``changes`` edit the
    requirement the client sees before it signs: a lower amount, another payTo, ...)."""
    shown = json.loads(json.dumps(reqs))
    shown["accepts"][0].update(changes)
    client = x402ClientSync()
    client.set_spend_controls(False)
    register_exact_evm_client(client, account or Account.create())
    payload = client.create_payment_payload(X402PaymentRequired.model_validate(shown))
    return json.loads(base64.b64decode(encode_payment_signature_header(payload)))


def verify(payment: dict[str, Any], reqs: dict[str, Any] | None = None, clock: Any = time.time):
    requirement = (reqs or requirements())["accepts"][0]
    return asyncio.run(BuiltinFacilitator(clock).verify(payment, requirement))


def test_a_stock_client_payment_verifies_and_names_its_payer() -> None:
    account = Account.create()
    verdict = verify(sign(requirements(), account))
    assert verdict.ok, verdict
    assert verdict.payer == account.address


def test_paying_more_than_the_quote_is_accepted() -> None:
    assert verify(sign(requirements(), amount="2500001")).ok


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"amount": "2499999"}, ERR_VALUE),
        ({"payTo": "0x2222222222222222222222222222222222222222"}, ERR_RECIPIENT),
        ({"maxTimeoutSeconds": -5}, ERR_VALID_BEFORE),
        ({"network": "eip155:8453"}, ERR_NETWORK),
        ({"asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"}, ERR_ASSET),
    ],
)
def test_a_payment_that_does_not_meet_the_quote_is_refused(
    changes: dict[str, Any], reason: str
) -> None:
    verdict = verify(sign(requirements(), **changes))
    assert not verdict.ok
    assert verdict.reason == reason, verdict


def test_signing_under_another_token_domain_is_a_bad_signature() -> None:
    reqs = requirements()
    payment = sign(reqs, extra={"name": "USD Coin", "version": "2", "quoteId": "quote_x"})
    verdict = verify(payment, reqs)
    assert (verdict.ok, verdict.reason) == (False, ERR_SIGNATURE)


def test_a_tampered_signature_or_authorization_is_refused() -> None:
    payment = sign(requirements())
    sig = payment["payload"]["signature"]
    flipped = sig[:10] + ("0" if sig[10] != "0" else "1") + sig[11:]
    tampered = json.loads(json.dumps(payment))
    tampered["payload"]["signature"] = flipped
    assert verify(tampered).reason == ERR_SIGNATURE
    raised = json.loads(json.dumps(payment))
    raised["payload"]["authorization"]["value"] = "9999999999"
    assert verify(raised).reason == ERR_SIGNATURE
    other = json.loads(json.dumps(payment))
    other["payload"]["authorization"]["from"] = Account.create().address
    assert verify(other).reason == ERR_SIGNATURE


def test_the_validity_window_is_checked_against_the_clock() -> None:
    payment = sign(requirements())
    before = int(payment["payload"]["authorization"]["validBefore"])
    assert verify(payment, clock=lambda: before - 1).ok
    assert verify(payment, clock=lambda: before).reason == ERR_VALID_BEFORE
    future = json.loads(json.dumps(payment))
    future["payload"]["authorization"]["validAfter"] = str(int(time.time()) + 600)
    assert verify(future).reason == ERR_VALID_AFTER


def test_malformed_fields_are_refused_before_any_arithmetic() -> None:
    payment = sign(requirements())
    for key, value in [("nonce", "0x12"), ("value", "-1"), ("to", "not-an-address")]:
        broken = json.loads(json.dumps(payment))
        broken["payload"]["authorization"][key] = value
        assert verify(broken).reason == ERR_PAYLOAD, key
    short = json.loads(json.dumps(payment))
    short["payload"]["signature"] = "0xdead"
    assert verify(short).reason == ERR_PAYLOAD


def test_decode_payment_reads_the_sdk_header_and_refuses_anything_else() -> None:
    payment = sign(requirements(quote_id="quote_abc"))
    header = base64.b64encode(json.dumps(payment).encode()).decode()
    decoded = x402.decode_payment(header)
    assert x402.quote_id_of(decoded) == "quote_abc"
    bad = [
        "not base64!",
        base64.b64encode(b"[1, 2]").decode(),
        base64.b64encode(json.dumps({**payment, "x402Version": 1}).encode()).decode(),
        base64.b64encode(json.dumps({**payment, "payload": {"x": 1}}).encode()).decode(),
        "A" * (x402.MAX_HEADER_CHARS + 4),
    ]
    for value in bad:
        with pytest.raises(x402.PaymentHeaderError):
            x402.decode_payment(value)


def test_usd_to_atomic_rounds_up_and_back_down() -> None:
    assert x402.to_atomic(Decimal("2.5"), 6) == "2500000"
    assert x402.to_atomic(Decimal("0.0000001"), 6) == "1"
    assert x402.from_atomic(2500001, 6) == Decimal("2.500001")
    assert x402.from_atomic(1, 18) == Decimal("0.000000")


def test_the_402_envelope_is_readable_by_the_x402_sdk() -> None:
    quote = {"id": "quote_x", "payment_requirements": requirements()}
    error = PaymentRequired("short", quote=quote, reason=ERR_VALUE)
    body = error.to_dict()
    assert body["error"]["code"] == "payment_required"
    assert "quote_x" in body["error"]["recommended_action"]
    assert body["quote"] == quote and body["x402Version"] == 2
    assert body["x402Error"] == ERR_VALUE
    accept = body["accepts"][0]
    assert accept["maxAmountRequired"] == accept["amount"] == "2500000"
    assert accept["resource"].endswith("/api/v1/account/quotes/quote_x/pay/x402")
    parsed = decode_payment_required_header(error.headers["PAYMENT-REQUIRED"])
    assert isinstance(parsed, X402PaymentRequired)
    assert parsed.error == ERR_VALUE
    assert parsed.accepts[0].pay_to == SETTINGS.x402_pay_to
    assert parsed.accepts[0].extra["quoteId"] == "quote_x"


class _Facilitator(BaseHTTPRequestHandler):
    """A facilitator over real HTTP: answers /verify and /settle from ``answers``."""

    answers: dict[str, Any] = {}
    seen: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.path, body))
        answer = self.answers.get(self.path)
        raw = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def facilitator_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Facilitator)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Facilitator.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_a_remote_facilitator_gets_the_payload_and_the_servers_requirement(
    facilitator_url: str,
) -> None:
    reqs = requirements()
    payment = sign(reqs)
    payer = payment["payload"]["authorization"]["from"]
    _Facilitator.answers = {
        "/verify": {"isValid": True, "payer": payer},
        "/settle": {"success": True, "payer": payer, "transaction": "0xabc", "network": "x"},
    }
    remote = facilitator_for(load_settings(x402_facilitator_url=facilitator_url))
    assert isinstance(remote, RemoteFacilitator)
    requirement = reqs["accepts"][0]
    assert asyncio.run(remote.verify(payment, requirement)).ok
    settled = asyncio.run(remote.settle(payment, requirement))
    assert (settled.ok, settled.transaction) == (True, "0xabc")
    paths = [path for path, _ in _Facilitator.seen]
    assert paths == ["/verify", "/settle"]
    sent = _Facilitator.seen[0][1]
    assert sent == {"x402Version": 2, "paymentPayload": payment, "paymentRequirements": requirement}


def test_a_remote_refusal_or_garbage_answer_credits_nothing(facilitator_url: str) -> None:
    remote = RemoteFacilitator(facilitator_url)
    payment, requirement = sign(requirements()), requirements()["accepts"][0]
    _Facilitator.answers = {
        "/verify": {"isValid": False, "invalidReason": ERR_VALUE, "invalidMessage": "low"},
        "/settle": b"<html>oops</html>",
    }
    refused = asyncio.run(remote.verify(payment, requirement))
    assert (refused.ok, refused.reason, refused.message) == (False, ERR_VALUE, "low")
    garbled = asyncio.run(remote.settle(payment, requirement))
    assert (garbled.ok, garbled.reason) == (False, ERR_FACILITATOR)
    unreachable = RemoteFacilitator("http://127.0.0.1:9", timeout_s=2)
    assert asyncio.run(unreachable.verify(payment, requirement)).reason == ERR_FACILITATOR


def test_without_a_facilitator_url_the_builtin_one_is_used() -> None:
    assert isinstance(facilitator_for(SETTINGS), BuiltinFacilitator)
