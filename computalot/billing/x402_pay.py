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

With a remote facilitator, which moves money on-chain when it settles, the authorisation is
first committed as ``settling`` (claiming the nonce and the quote, same unique keys), then
settled, then credited in one transaction; a failed settle deletes the claim and reopens the
quote. A process that dies between settle and credit leaves the quote ``settling`` and its
authorisation recorded: the operator reconciles it against the chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
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
        recommended_action={
            "expired": "ask for a new quote (POST /api/v1/account/quotes/topup) and pay that one",
            "settling": "another payment of it is being settled: see GET /api/v1/account/quotes",
        }.get(status, "nothing to pay: the quote is paid (see GET /api/v1/account/ledger)"),
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
    if not facilitator.moves_money:
        # Built-in: settling is recording, so record, mark and credit in one transaction.
        settled = await facilitator.settle(payment, requirement)
        if not settled.ok:
            raise _refused(quote, settings, settled, header)
        return await _credit(db, quote, payment, settled, settings=settings, header=header)
    # A remote facilitator moves money on-chain: claim the quote and the nonce first (so no
    # second payment of this quote is ever settled), settle, then credit; a failed settle
    # releases the claim.
    await _claim(db, quote, payment, settings=settings, header=header)
    settled = await facilitator.settle(payment, requirement)
    if not settled.ok:
        await _release(db, quote.id)
        raise _refused(quote, settings, settled, header)
    return await _credit(
        db, quote, payment, settled, settings=settings, header=header, claimed=True
    )


def _replay() -> Verdict:
    return Verdict.refuse(
        ERR_NONCE_USED, "this authorization (its nonce) was already used for a payment"
    )


def _payment_row(
    quote: Quote, payment: dict[str, Any], *, status: str, ledger_id: str | None
) -> X402Payment:
    auth = payment["payload"]["authorization"]
    return X402Payment(
        quote_id=quote.id,
        account_id=quote.account_id,
        network=quote.network,
        asset=quote.asset.lower(),
        payer=str(auth["from"]).lower(),
        pay_to=str(auth["to"]).lower(),
        nonce=str(auth["nonce"]).lower(),
        value_atomic=str(auth["value"]),
        valid_before=int(auth["validBefore"]),
        signature=str(payment["payload"]["signature"]),
        status=status,
        ledger_id=ledger_id,
        created_at=utcnow(),
    )


async def _lost_race(
    db: AsyncSession, quote_id: str, auth: dict[str, Any], settings: Settings, header: str
) -> Exception:
    """Another request won: with this very authorisation (a replay: 402), or with another
    payment of the same quote (the quote is paid or being paid: 409). Takes the id: the
    rollback expires every row the session held."""
    await db.rollback()
    fresh = await db.get(Quote, quote_id, populate_existing=True)
    assert fresh is not None  # quotes are never deleted
    if await _nonce_used(db, fresh, auth):
        return _refused(fresh, settings, _replay(), header)
    return closed_quote(fresh, quote_status(fresh))


async def _move_quote(db: AsyncSession, quote_id: str, before: str, **values: Any) -> bool:
    moved = await db.execute(
        update(Quote)
        .where(Quote.id == quote_id, Quote.status == before)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(moved, "rowcount", 0) == 1)


async def _claim(
    db: AsyncSession, quote: Quote, payment: dict[str, Any], *, settings: Settings, header: str
) -> None:
    """Commit the authorisation (status ``settling``) and move the quote to ``settling``."""
    auth = payment["payload"]["authorization"]
    quote_id = quote.id
    try:
        db.add(_payment_row(quote, payment, status="settling", ledger_id=None))
        await db.flush()
        if not await _move_quote(db, quote_id, "open", status="settling"):
            raise await _lost_race(db, quote_id, auth, settings, header)
        await db.commit()
    except IntegrityError:
        raise await _lost_race(db, quote_id, auth, settings, header) from None


async def _release(db: AsyncSession, quote_id: str) -> None:
    """A settle failed: nothing moved, so the authorisation is forgotten and the quote open."""
    await db.execute(
        delete(X402Payment).where(
            X402Payment.quote_id == quote_id, X402Payment.status == "settling"
        )
    )
    await _move_quote(db, quote_id, "settling", status="open")
    await db.commit()


async def _credit(
    db: AsyncSession,
    quote: Quote,
    payment: dict[str, Any],
    settled: Verdict,
    *,
    settings: Settings,
    header: str,
    claimed: bool = False,
) -> Receipt:
    """One transaction: the authorisation recorded (or its claim completed), the quote
    ``paid``, the ledger credited with what was authorised."""
    auth = payment["payload"]["authorization"]
    payer = str(auth["from"]).lower()
    amount = x402.from_atomic(int(auth["value"]), settings.x402_asset_decimals)
    now = utcnow()
    entry_id = new_id("led")
    quote_id = quote.id
    try:
        if claimed:
            await db.execute(
                update(X402Payment)
                .where(X402Payment.quote_id == quote_id)
                .values(status="settled", ledger_id=entry_id, transaction=settled.transaction)
            )
        else:
            db.add(_payment_row(quote, payment, status="settled", ledger_id=entry_id))
            await db.flush()
        paid_now = await _move_quote(
            db,
            quote_id,
            "settling" if claimed else "open",
            status="paid",
            paid_at=now,
            payer=payer,
            ledger_id=entry_id,
        )
        if not paid_now:
            raise await _lost_race(db, quote_id, auth, settings, header)
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
        raise await _lost_race(db, quote_id, auth, settings, header) from None
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
