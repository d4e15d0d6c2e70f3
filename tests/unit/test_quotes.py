"""Quotes (docs/llms-full.md, "Billing"): amounts, expiry, the shortfall contract, paging."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from computalot.billing import quotes
from computalot.errors import BadRequest, NotFound, PaymentRequired
from computalot.settings import load_settings
from computalot.store.accounts import create_account, grant_credit
from computalot.store.db import Store
from computalot.store.migrate import upgrade
from computalot.store.models import Feedback, Quote
from computalot.timeutil import utcnow

SETTINGS = load_settings(quote_ttl_s=60)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'q.db'}")
    await upgrade(store.engine)
    yield store
    await store.close()


async def test_amounts_round_up_to_the_ledger_and_to_a_cent_at_least(store: Store) -> None:
    async with store.sessions() as db:
        account = await create_account(db, name="a")
        tiny = await quotes.create_quote(
            db, account.id, "topup", Decimal("0.001"), settings=SETTINGS
        )
        odd = await quotes.create_quote(
            db, account.id, "topup", Decimal("1.2345671"), settings=SETTINGS
        )
    assert (tiny.amount_usd, tiny.amount_atomic) == (Decimal("0.01"), "10000")
    assert (odd.amount_usd, odd.amount_atomic) == (Decimal("1.234568"), "1234568")
    assert odd.expires_at - odd.created_at == timedelta(seconds=60)
    with pytest.raises(ValueError):
        await quotes.create_quote(db, account.id, "gift", Decimal(1), settings=SETTINGS)


async def test_an_open_quote_past_its_expiry_reads_expired(store: Store) -> None:
    async with store.sessions() as db:
        account = await create_account(db, name="a")
        quote = await quotes.create_quote(db, account.id, "topup", Decimal(1), settings=SETTINGS)
    assert quotes.quote_status(quote) == "open"
    assert quotes.quote_status(quote, utcnow() + timedelta(seconds=61)) == "expired"
    quote.status = "paid"
    assert quotes.quote_status(quote, utcnow() + timedelta(seconds=61)) == "paid"
    shown = quotes.quote_out(quote, SETTINGS)
    assert shown["payment_requirements"]["accepts"][0]["extra"]["quoteId"] == quote.id


async def test_a_shortfall_quote_rolls_back_the_callers_writes_and_outlives_them(
    store: Store,
) -> None:
    async with store.sessions() as db:
        account = await create_account(db, name="a")
        await db.commit()
        db.add(Feedback(id="fb_x", type="bug", title="t", description="d", created_at=utcnow()))
        await db.flush()
        shown = await quotes.shortfall_quote(db, account.id, Decimal("2.5"), settings=SETTINGS)
    assert (shown["kind"], shown["amount_usd"], shown["status"]) == ("shortfall", 2.5, "open")
    async with store.sessions() as db:
        assert await db.get(Feedback, "fb_x") is None
        assert (await db.get(Quote, shown["id"])) is not None


async def test_require_available_passes_at_the_floor_and_quotes_the_difference_below(
    store: Store,
) -> None:
    async with store.sessions() as db:
        account_id = (await create_account(db, name="a")).id  # rollback expires the row
        await grant_credit(db, account_id, Decimal("4.25"))
        await db.commit()
        with pytest.raises(PaymentRequired) as raised:
            await quotes.require_available(
                db, account_id, Decimal(5), kind="init", what="init", settings=SETTINGS
            )
        assert raised.value.quote["amount_usd"] == 0.75
        assert raised.value.to_dict()["quote"]["kind"] == "init"
        await grant_credit(db, account_id, Decimal("0.75"))
        await db.commit()
        assert await quotes.require_available(
            db, account_id, Decimal(5), kind="init", what="init", settings=SETTINGS
        ) == Decimal(5)


async def test_quotes_are_scoped_to_their_account_and_paged(store: Store) -> None:
    async with store.sessions() as db:
        mine = await create_account(db, name="mine")
        theirs = await create_account(db, name="theirs")
        made = [
            (await quotes.create_quote(db, mine.id, "topup", Decimal(i + 1), settings=SETTINGS)).id
            for i in range(5)
        ]
        other = await quotes.create_quote(db, theirs.id, "topup", Decimal(1), settings=SETTINGS)
        await db.commit()
        with pytest.raises(NotFound):
            await quotes.get_quote(db, mine.id, other.id)
        seen, cursor = [], None
        while True:
            page, cursor = await quotes.list_quotes(db, mine.id, limit=2, cursor=cursor)
            seen += [q.id for q in page]
            if cursor is None:
                break
        assert seen == list(reversed(made))
        with pytest.raises(BadRequest):
            await quotes.list_quotes(db, mine.id, limit=2, cursor="garbage")
        rows = (await db.execute(select(Quote.id).where(Quote.account_id == mine.id))).all()
        assert len(rows) == 5
