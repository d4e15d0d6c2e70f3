"""Quotes: a price an account can pay once over x402 before it expires (docs/llms-full.md,
"Billing").

Three kinds: ``topup`` (``POST /account/quotes/topup``), ``shortfall`` (a submit whose hold the
available balance cannot cover) and ``init`` (``POST /projects/:name/init`` below the $5
floor). A quote is ``open`` until it is paid (``paid``) or its ``expires_at`` passes
(``expired``, computed when read, so no sweeper is needed); while a remote facilitator settles
its payment on-chain it is ``settling``. Every 402 the platform answers
carries one, with the x402 payment requirements that pay it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.billing import x402
from computalot.errors import NotFound, PaymentRequired
from computalot.ids import new_id
from computalot.settings import Settings, get_settings
from computalot.store.models import LedgerEntry, Quote
from computalot.store.paging import newest_first
from computalot.timeutil import iso, utcnow

KINDS = ("topup", "shortfall", "init")
#: ``POST /projects/:name/init`` needs at least this much available (init itself is free).
INIT_MINIMUM_USD = Decimal("5")
#: The smallest quote: below a cent, the payment costs more than it moves.
MIN_QUOTE_USD = Decimal("0.01")
_CENT = Decimal("0.000001")


def quote_status(quote: Quote, now: datetime | None = None) -> str:
    if quote.status == "open" and quote.expires_at <= (now or utcnow()):
        return "expired"
    return quote.status


def quote_out(quote: Quote, settings: Settings | None = None) -> dict[str, Any]:
    """The public shape: the quote plus the x402 requirements that pay it."""
    settings = settings or get_settings()
    status = quote_status(quote)
    return {
        "id": quote.id,
        "kind": quote.kind,
        "status": status,
        "amount_usd": float(quote.amount_usd),
        "memo": quote.memo,
        "created_at": iso(quote.created_at),
        "expires_at": iso(quote.expires_at),
        "paid_at": iso(quote.paid_at),
        "payer": quote.payer,
        "ledger_entry_id": quote.ledger_id,
        "pay_url": x402.pay_url(settings, quote.id),
        "payment_requirements": x402.requirements(
            settings,
            quote_id=quote.id,
            amount_atomic=quote.amount_atomic,
            network=quote.network,
            asset=quote.asset,
            pay_to=quote.pay_to,
            description=f"Computalot {quote.kind} quote {quote.id}: ${quote.amount_usd:.2f}",
        ),
    }


async def create_quote(
    db: AsyncSession,
    account_id: str,
    kind: str,
    amount_usd: Decimal,
    *,
    memo: str | None = None,
    settings: Settings | None = None,
) -> Quote:
    """A new open quote (flushed, not committed). ``amount_usd`` is rounded up to the ledger's
    6 places and to at least :data:`MIN_QUOTE_USD`."""
    if kind not in KINDS:
        raise ValueError(f"unknown quote kind {kind!r}")
    settings = settings or get_settings()
    amount = max(Decimal(amount_usd), MIN_QUOTE_USD).quantize(_CENT, rounding="ROUND_CEILING")
    now = utcnow()
    quote = Quote(
        id=new_id("quote"),
        account_id=account_id,
        kind=kind,
        status="open",
        amount_usd=amount,
        amount_atomic=x402.to_atomic(amount, settings.x402_asset_decimals),
        network=settings.x402_network,
        asset=settings.x402_asset,
        pay_to=settings.x402_pay_to,
        memo=memo,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.quote_ttl_s),
    )
    db.add(quote)
    await db.flush()
    return quote


async def shortfall_quote(
    db: AsyncSession,
    account_id: str,
    shortfall_usd: Decimal,
    *,
    kind: str = "shortfall",
    memo: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Write a quote for ``shortfall_usd`` and answer its public shape, ready for
    ``PaymentRequired(message, quote=...)``.

    It first ROLLS BACK whatever ``db`` holds (a 402 creates nothing but the quote: no job, no
    hold, no idempotency record), then commits the quote alone, so it outlives the refused
    request and can be paid."""
    await db.rollback()
    quote = await create_quote(
        db, account_id, kind, shortfall_usd, memo=memo or "balance shortfall", settings=settings
    )
    await db.commit()
    return quote_out(quote, settings)


async def ledger_balance(db: AsyncSession, account_id: str) -> Decimal:
    """Sum of the account's ledger entries (credits and grants positive, debits negative)."""
    query = select(func.coalesce(func.sum(LedgerEntry.amount_usd), 0)).where(
        LedgerEntry.account_id == account_id
    )
    return Decimal((await db.execute(query)).scalar_one())


async def available_usd(db: AsyncSession, account_id: str) -> Decimal:
    """Ledger minus holds: the billing module's figure when it is there, else the ledger."""
    try:
        from computalot.billing import balance as billing_balance
    except ImportError:  # pragma: no cover - until the holds land with the balance module
        return await ledger_balance(db, account_id)
    return Decimal(await billing_balance.available_usd(db, account_id))


async def require_available(
    db: AsyncSession,
    account_id: str,
    minimum_usd: Decimal,
    *,
    kind: str,
    what: str,
    settings: Settings | None = None,
) -> Decimal:
    """The available balance when it is at least ``minimum_usd``; otherwise 402 with a quote
    for the difference (``kind`` ``init`` or ``shortfall``)."""
    available = await available_usd(db, account_id)
    if available >= minimum_usd:
        return available
    missing = minimum_usd - available
    quote = await shortfall_quote(
        db,
        account_id,
        missing,
        kind=kind,
        memo=f"{what} needs ${minimum_usd:.2f} available",
        settings=settings,
    )
    raise PaymentRequired(
        f"{what} needs ${minimum_usd:.2f} available; available is ${available:.2f}",
        quote=quote,
        details=[
            {
                "loc": ["available_usd"],
                "msg": f"{available:.6f} < {minimum_usd:.6f}",
                "available_usd": float(available),
                "required_usd": float(minimum_usd),
            }
        ],
    )


async def get_quote(db: AsyncSession, account_id: str, quote_id: str) -> Quote:
    """The caller's quote; another account's (or an unknown id) is 404."""
    quote = await db.get(Quote, quote_id)
    if quote is None or quote.account_id != account_id:
        raise NotFound(
            f"quote {quote_id} not found",
            details=[{"loc": ["quote_id"], "msg": "no such quote in this account"}],
            recommended_action="list your quotes with GET /api/v1/account/quotes",
        )
    return quote


async def list_quotes(
    db: AsyncSession, account_id: str, *, limit: int, cursor: str | None
) -> tuple[list[Quote], str | None]:
    """Newest first, ``limit`` a page; the cursor is the last row's (created_at, id)."""
    query = select(Quote).where(Quote.account_id == account_id)
    return await newest_first(db, Quote, query, limit=limit, cursor=cursor)
