"""Paying a quote with an x402 payment, crediting the ledger exactly once (docs/llms-full.md,
"Billing").

The order of the checks decides what a caller hears: an unknown quote (or another account's)
is 404; a payload whose nonce was already accepted is a replay (402
``invalid_exact_evm_nonce_already_used``), even against the quote it paid; a quote already
paid or expired is 409; a payment the facilitator refuses is 402 with its reason and the quote's
requirements again. Then one transaction records the authorisation, marks the quote paid and
writes the credit; the authorisation's unique keys (nonce per payer, token and chain; one
payment per quote) make the loser of any race fail there and roll back, so two requests
carrying one payload credit once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.billing import x402
from computalot.billing.facilitator import ERR_NONCE_USED, Facilitator, Verdict
from computalot.billing.quotes import available_usd, get_quote, quote_out, quote_status
from computalot.errors import BadRequest, Conflict, PaymentRequired
from computalot.ids import new_id
from computalot.settings import Settings
from computalot.store.models import LedgerEntry, Quote, X402Payment
from computalot.timeutil import iso, utcnow


@dataclass(frozen=True)
class Receipt:
    """What a paid quote answers: ``body`` (JSON) and ``settlement`` (the ``PAYMENT-RESPONSE``
    header's value, x402's ``SettleResponse`` base64-encoded)."""

    body: dict[str, Any]
    settlement: str


def unreadable(header: str, message: str) -> BadRequest:
    return BadRequest(
        f"{header}: {message}",
        details=[{"loc": ["header", header], "msg": message}],
        recommended_action=(
            "send the x402 payment payload as base64 JSON (an x402 client's "
            "encode_payment_signature_header does it)"
        ),
    )


def _refused(quote: Quote, settings: Settings, verdict: Verdict, header: str) -> PaymentRequired:
    reason = verdict.reason or "invalid_payment"
    return PaymentRequired(
        f"payment refused ({reason}): {verdict.message}",
        quote=quote_out(quote, settings),
        reason=reason,
        details=[{"loc": ["header", header], "msg": verdict.message, "reason": reason}],
        recommended_action=(
            f"nothing was credited; sign a new authorization that meets the quote's "
            f"requirements (accepts) and send it to POST /api/v1/account/quotes/{quote.id}/pay/x402"
        ),
    )


def closed_quote(quote: Quote, status: str) -> Conflict:
    return Conflict(
        f"quote {quote.id} is {status}; it cannot be paid",
        details=[{"loc": ["quote_id"], "msg": f"quote is {status}", "status": status}],
        recommended_action=(
            "ask for a new quote (POST /api/v1/account/quotes/topup) and pay that one"
            if status == "expired"
            else "nothing to pay: the quote is paid (see GET /api/v1/account/ledger)"
        ),
    )


async def _nonce_used(db: AsyncSession, quote: Quote, auth: dict[str, Any]) -> bool:
    query = select(X402Payment.id).where(
        X402Payment.network == quote.network,
        X402Payment.asset == quote.asset.lower(),
        X402Payment.payer == str(auth["from"]).lower(),
        X402Payment.nonce == str(auth["nonce"]).lower(),
    )
    return (await db.execute(query)).first() is not None


async def pay_quote(
    db: AsyncSession,
    account_id: str,
    quote_id: str,
    header: str,
    value: str,
    *,
    settings: Settings,
    facilitator: Facilitator,
) -> Receipt:
    """Verify ``value`` (a ``PAYMENT-SIGNATURE``/``X-PAYMENT`` header named ``header``) as a
    payment of the caller's quote ``quote_id``; on success credit it once and commit."""
    quote = await get_quote(db, account_id, quote_id)
    try:
        payment = x402.decode_payment(value)
    except x402.PaymentHeaderError as exc:
        raise unreadable(header, str(exc)) from None
    auth = payment["payload"]["authorization"]
    if await _nonce_used(db, quote, auth):
        raise _refused(quote, settings, _replay(), header)
    status = quote_status(quote)
    if status != "open":
        raise closed_quote(quote, status)
    requirement = quote_out(quote, settings)["payment_requirements"]["accepts"][0]
    verdict = await facilitator.verify(payment, requirement)
    if not verdict.ok:
        raise _refused(quote, settings, verdict, header)
    settled = await facilitator.settle(payment, requirement)
    if not settled.ok:
        raise _refused(quote, settings, settled, header)
    return await _credit(db, quote, payment, settled, settings=settings, header=header)


def _replay() -> Verdict:
    return Verdict.refuse(
        ERR_NONCE_USED, "this authorization (its nonce) was already used for a payment"
    )


async def _credit(
    db: AsyncSession,
    quote: Quote,
    payment: dict[str, Any],
    settled: Verdict,
    *,
    settings: Settings,
    header: str,
) -> Receipt:
    auth = payment["payload"]["authorization"]
    payer = str(auth["from"]).lower()
    amount = x402.from_atomic(int(auth["value"]), settings.x402_asset_decimals)
    now = utcnow()
    entry_id = new_id("led")
    quote_id = quote.id
    try:
        db.add(
            X402Payment(
                quote_id=quote_id,
                account_id=quote.account_id,
                network=quote.network,
                asset=quote.asset.lower(),
                payer=payer,
                pay_to=str(auth["to"]).lower(),
                nonce=str(auth["nonce"]).lower(),
                value_atomic=str(auth["value"]),
                valid_before=int(auth["validBefore"]),
                signature=str(payment["payload"]["signature"]),
                transaction=settled.transaction,
                ledger_id=entry_id,
                created_at=now,
            )
        )
        await db.flush()
        marked = await db.execute(
            update(Quote)
            .where(Quote.id == quote_id, Quote.status == "open")
            .values(status="paid", paid_at=now, payer=payer, ledger_id=entry_id)
            .execution_options(synchronize_session=False)
        )
        if getattr(marked, "rowcount", 0) != 1:
            await db.rollback()
            fresh = await db.get(Quote, quote_id, populate_existing=True)
            raise closed_quote(fresh or quote, quote_status(fresh) if fresh else "paid")
        db.add(
            LedgerEntry(
                id=entry_id,
                account_id=quote.account_id,
                kind="credit",
                amount_usd=amount,
                memo=f"x402 payment from {payer} (quote {quote_id})",
                created_at=now,
            )
        )
        await db.commit()
    except IntegrityError:
        # Another request won the race: with this very authorisation (a replay), or with
        # another payment of the same quote (then the quote is paid: 409).
        await db.rollback()
        fresh = await db.get(Quote, quote_id, populate_existing=True)
        if fresh is None or await _nonce_used(db, fresh, auth):
            raise _refused(fresh or quote, settings, _replay(), header) from None
        raise closed_quote(fresh, quote_status(fresh)) from None
    paid = await db.get(Quote, quote_id, populate_existing=True)
    assert paid is not None
    settlement = {
        "success": True,
        "payer": payer,
        "transaction": settled.transaction or "",
        "network": quote.network,
        "amount": str(auth["value"]),
    }
    body = {
        "quote": quote_out(paid, settings),
        "ledger_entry": {
            "id": entry_id,
            "kind": "credit",
            "amount_usd": float(amount),
            "memo": f"x402 payment from {payer} (quote {quote_id})",
            "created_at": iso(now),
        },
        "payment": {
            "payer": payer,
            "network": quote.network,
            "asset": quote.asset,
            "value": str(auth["value"]),
            "nonce": str(auth["nonce"]).lower(),
            "transaction": settled.transaction,
        },
        "available_usd": float(await available_usd(db, quote.account_id)),
    }
    return Receipt(body, x402.encode_settlement(settlement))


async def pay_from_headers(
    db: AsyncSession,
    account_id: str,
    headers: Any,
    *,
    settings: Settings,
    facilitator: Facilitator,
) -> Receipt | None:
    """The payment a request carries (``PAYMENT-SIGNATURE``/``X-PAYMENT``), paid against the
    quote it names (``accepted.extra.quoteId``, copied from a 402's requirements); ``None``
    when the request carries no payment. What a stock x402 client's retry of any route that
    answered 402 goes through before the route runs again."""
    found = x402.payment_header(headers)
    if found is None:
        return None
    header, value = found
    try:
        payment = x402.decode_payment(value)
    except x402.PaymentHeaderError as exc:
        raise unreadable(header, str(exc)) from None
    quote_id = x402.quote_id_of(payment)
    if quote_id is None:
        raise unreadable(header, "accepted.extra.quoteId is missing: pay a quote from a 402")
    return await pay_quote(
        db, account_id, quote_id, header, value, settings=settings, facilitator=facilitator
    )
