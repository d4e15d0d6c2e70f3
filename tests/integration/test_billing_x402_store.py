"""The x402 credit on both stores (docs/llms-full.md, "Billing"): concurrent payments of one
payload credit once, because the database's unique keys decide, not a check made before the
write; the migration and the models agree on the two tables."""

from __future__ import annotations

import asyncio
import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from eth_account import Account
from sqlalchemy import func, inspect, select
from x402 import x402ClientSync
from x402.http.utils import encode_payment_signature_header
from x402.mechanisms.evm.exact.register import register_exact_evm_client
from x402.schemas import PaymentRequired as X402PaymentRequired

from computalot.billing.facilitator import BuiltinFacilitator, RemoteFacilitator, Verdict
from computalot.billing.quotes import create_quote, quote_out
from computalot.billing.x402_pay import Receipt, pay_quote
from computalot.errors import Conflict, PaymentRequired
from computalot.settings import load_settings
from computalot.store.accounts import create_account
from computalot.store.db import Store
from computalot.store.models import LedgerEntry, X402Payment

SETTINGS = load_settings()


def sign(quote: dict[str, Any], account: Any = None) -> str:
    client = x402ClientSync()
    client.set_spend_controls(False)
    register_exact_evm_client(client, account or Account.create())
    required = X402PaymentRequired.model_validate(quote["payment_requirements"])
    return encode_payment_signature_header(client.create_payment_payload(required))


class SlowBuiltin(BuiltinFacilitator):
    """The built-in verifier, holding every request a moment after verifying, so both
    requests of a pair have passed every check before either writes."""

    async def verify(self, payment: dict[str, Any], requirement: dict[str, Any]) -> Verdict:
        verdict = await super().verify(payment, requirement)
        await asyncio.sleep(0.2)
        return verdict


async def _new_quote(store: Store, amount: str = "1.5") -> tuple[str, dict[str, Any]]:
    async with store.sessions() as db:
        account = await create_account(db, name="payer")
        quote = await create_quote(db, account.id, "topup", Decimal(amount), settings=SETTINGS)
        await db.commit()
        return account.id, quote_out(quote, SETTINGS)


async def _pay(store: Store, account_id: str, quote_id: str, value: str) -> Any:
    async with store.sessions() as db:
        try:
            return await pay_quote(
                db,
                account_id,
                quote_id,
                "PAYMENT-SIGNATURE",
                value,
                settings=SETTINGS,
                facilitator=SlowBuiltin(),
            )
        except (PaymentRequired, Conflict) as exc:
            return exc


async def _credits(store: Store, account_id: str) -> tuple[int, Decimal]:
    async with store.sessions() as db:
        query = select(func.count(), func.coalesce(func.sum(LedgerEntry.amount_usd), 0)).where(
            LedgerEntry.account_id == account_id, LedgerEntry.kind == "credit"
        )
        count, total = (await db.execute(query)).one()
        return int(count), Decimal(str(total))


async def test_one_payload_sent_twice_at_once_credits_once(store: Store) -> None:
    for _ in range(3):
        account_id, quote = await _new_quote(store)
        value = sign(quote)
        first, second = await asyncio.gather(
            _pay(store, account_id, quote["id"], value),
            _pay(store, account_id, quote["id"], value),
        )
        outcomes = sorted(type(o).__name__ for o in (first, second))
        assert outcomes == ["PaymentRequired", "Receipt"], (first, second)
        refused = first if isinstance(first, PaymentRequired) else second
        assert refused.details[0]["reason"] == "invalid_exact_evm_nonce_already_used"
        assert await _credits(store, account_id) == (1, Decimal("1.5"))


async def test_two_payloads_for_one_quote_at_once_credit_once(store: Store) -> None:
    account_id, quote = await _new_quote(store, "2")
    one, other = sign(quote), sign(quote)
    results = await asyncio.gather(
        _pay(store, account_id, quote["id"], one),
        _pay(store, account_id, quote["id"], other),
    )
    receipts = [r for r in results if isinstance(r, Receipt)]
    assert len(receipts) == 1, results
    loser = next(r for r in results if not isinstance(r, Receipt))
    assert isinstance(loser, Conflict) and loser.details[0]["status"] == "paid", loser
    assert await _credits(store, account_id) == (1, Decimal("2"))
    async with store.sessions() as db:
        rows = await db.execute(select(X402Payment).where(X402Payment.quote_id == quote["id"]))
        assert len(rows.all()) == 1


async def test_the_payment_tables_carry_their_unique_keys(store: Store) -> None:
    def uniques(sync_conn: Any) -> set[tuple[str, ...]]:
        found = inspect(sync_conn).get_unique_constraints("x402_payments")
        return {tuple(u["column_names"]) for u in found}

    async with store.engine.connect() as conn:
        assert await conn.run_sync(uniques) == {
            ("network", "asset", "payer", "nonce"),
            ("quote_id",),
        }


class _Facilitator(BaseHTTPRequestHandler):
    """A remote facilitator over real HTTP; ``settles`` says whether /settle succeeds."""

    settles = True
    calls: list[str] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.calls.append(self.path)
        payer = body["paymentPayload"]["payload"]["authorization"]["from"]
        if self.path == "/verify":
            answer: dict[str, Any] = {"isValid": True, "payer": payer}
        elif self.settles:
            answer = {"success": True, "payer": payer, "transaction": "0x" + "ab" * 32}
            answer["network"] = body["paymentRequirements"]["network"]
        else:
            answer = {"success": False, "errorReason": "transaction_failed", "transaction": ""}
            answer["network"] = body["paymentRequirements"]["network"]
        raw = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


async def test_a_remote_facilitator_settles_before_the_credit(store: Store) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Facilitator)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    remote = RemoteFacilitator(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        _Facilitator.calls, _Facilitator.settles = [], False
        account_id, quote = await _new_quote(store)
        async with store.sessions() as db:
            with pytest.raises(PaymentRequired) as refused:
                await pay_quote(
                    db, account_id, quote["id"], "X-PAYMENT", sign(quote),
                    settings=SETTINGS, facilitator=remote,
                )  # fmt: skip
        assert refused.value.details[0]["reason"] == "transaction_failed"
        assert await _credits(store, account_id) == (0, Decimal(0))

        _Facilitator.calls, _Facilitator.settles = [], True
        async with store.sessions() as db:
            receipt = await pay_quote(
                db, account_id, quote["id"], "X-PAYMENT", sign(quote),
                settings=SETTINGS, facilitator=remote,
            )  # fmt: skip
        assert _Facilitator.calls == ["/verify", "/settle"]
        assert receipt.body["payment"]["transaction"] == "0x" + "ab" * 32
        assert await _credits(store, account_id) == (1, Decimal("1.5"))
        async with store.sessions() as db:
            row = (
                await db.execute(select(X402Payment).where(X402Payment.quote_id == quote["id"]))
            ).scalar_one()
            assert (row.transaction, row.status) == ("0x" + "ab" * 32, "settled")

        # Two different payments of one quote at once: one is claimed, settled and credited;
        # the other is never sent to /settle (it would move money for nothing).
        _Facilitator.calls = []
        account_id, quote = await _new_quote(store, "2")

        async def remote_pay(value: str) -> Any:
            async with store.sessions() as db:
                try:
                    return await pay_quote(
                        db, account_id, quote["id"], "X-PAYMENT", value,
                        settings=SETTINGS, facilitator=remote,
                    )  # fmt: skip
                except Conflict as exc:
                    return exc

        results = await asyncio.gather(remote_pay(sign(quote)), remote_pay(sign(quote)))
        assert sorted(type(r).__name__ for r in results) == ["Conflict", "Receipt"], results
        assert _Facilitator.calls.count("/settle") == 1
        assert await _credits(store, account_id) == (1, Decimal("2"))
    finally:
        server.shutdown()
        server.server_close()
