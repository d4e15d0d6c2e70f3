"""Holds: a job's worst case set aside at submit, settled to what it used when it ends
(docs/llms-full.md, "Billing").

* :func:`place_hold`, in the submit's transaction after the account lock
  (``computalot.jobs.quotas.lock_account``; on SQLite the job row's INSERT already holds the
  database's write lock): it reads the available balance and writes the hold in the same
  transaction, so two submits of one account never both spend the same dollars. When the
  balance cannot cover it, the whole transaction is rolled back (no job, no tasks, no
  idempotency record) and the answer is 402 with a shortfall quote.
* :func:`settle_job`, in the transaction that ends the job (``computalot.engine.counters``
  writes a job's ``end``): the hold is closed with a compare-and-set on ``status = 'open'``,
  so it settles once however many paths race, and the usage becomes ONE ledger debit
  (``kind: debit``, negative ``amount_usd``). Usage = the task-seconds every attempt of every
  task ran (``tasks.billed_s``, retries included) × the price the hold was taken at, never more
  than the hold: a job is never charged above the worst case it was quoted.

Nothing here knows what a project or a recipe is: a hold belongs to an account and a job id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.billing.balance import OPEN, SETTLED, balance
from computalot.billing.prices import price_table
from computalot.billing.quotes import shortfall_quote
from computalot.errors import PaymentRequired
from computalot.ids import new_id
from computalot.settings import Settings
from computalot.store.models import Account, Hold, Job, LedgerEntry, Task
from computalot.timeutil import utcnow

MICRO = Decimal("0.000001")
SECONDS_PER_HOUR = Decimal(3600)


def worst_case_usd(n_tasks: int, timeout_s: int, usd_per_hour: Decimal) -> Decimal:
    """Every task running its whole ``timeout_s``: the hold (rounded up to a micro-dollar)."""
    seconds = Decimal(n_tasks) * Decimal(timeout_s)
    return (seconds * usd_per_hour / SECONDS_PER_HOUR).quantize(MICRO, rounding=ROUND_CEILING)


def usage_usd(billed_s: float, usd_per_hour: Decimal) -> Decimal:
    """``billed_s`` task-seconds at ``usd_per_hour`` (rounded half up to a micro-dollar)."""
    seconds = Decimal(repr(max(billed_s, 0.0)))
    return (seconds * usd_per_hour / SECONDS_PER_HOUR).quantize(MICRO, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Charge:
    """What settling a hold wrote."""

    hold_id: str
    billed_s: float
    charged_usd: Decimal
    released_usd: Decimal
    ledger_id: str | None


async def place_hold(
    db: AsyncSession,
    account_id: str,
    job_id: str,
    amount_usd: Decimal,
    usd_per_hour: Decimal,
    *,
    exempt: bool = False,
    memo: str | None = None,
    settings: Settings | None = None,
) -> Hold:
    """Set ``amount_usd`` aside for ``job_id`` (the caller holds the account's lock).

    ``exempt`` (an admin under ``COMPUTALOT_BILLING_EXEMPT_ADMINS``): the hold is recorded and
    settled like any other, but never refuses. Otherwise, when ``available_usd`` is short, the
    caller's transaction is ROLLED BACK, a shortfall quote is committed on its own, and
    :class:`PaymentRequired` is raised."""
    if not exempt:
        money = await balance(db, account_id)
        available = money.available_usd
        if available < amount_usd:
            missing = amount_usd - available
            quote = await shortfall_quote(
                db,
                account_id,
                missing,
                memo=f"job hold of ${amount_usd:.6f}; available ${available:.6f}",
                settings=settings,
            )
            raise PaymentRequired(
                f"this job's hold is ${amount_usd:.6f} (tasks × timeout_s × "
                f"${usd_per_hour:.6f} per task-hour) but only ${available:.6f} is available",
                quote=quote,
                details=[
                    {
                        "loc": ["available_usd"],
                        "msg": f"{available:.6f} < {amount_usd:.6f}",
                        "hold_usd": float(amount_usd),
                        "available_usd": float(available),
                        "shortfall_usd": float(missing),
                        "usd_per_hour": float(usd_per_hour),
                    }
                ],
            )
    hold = Hold(
        id=new_id("hold"),
        account_id=account_id,
        job_id=job_id,
        status=OPEN,
        amount_usd=amount_usd,
        usd_per_hour=usd_per_hour,
        memo=memo,
        created_at=utcnow(),
    )
    db.add(hold)
    return hold


#: A job's open hold and the task-seconds its attempts ran, in one read.
OPEN_HOLD_AND_USAGE = select(
    Hold.id,
    Hold.account_id,
    Hold.amount_usd,
    Hold.usd_per_hour,
    select(func.coalesce(func.sum(Task.billed_s), 0.0))
    .where(Task.job_id == Hold.job_id)
    .scalar_subquery(),
).where(Hold.status == OPEN)


async def settle_job(db: AsyncSession, job_id: str) -> Charge | None:
    """Settle ``job_id``'s open hold to its tasks' billed seconds: one debit, the rest
    released. None when it has no open hold (settled already, or never held).

    Locks are taken job row first, then hold, as every path that ends a job takes them (it
    moves the job row before it settles), so two paths settling at once wait, never
    deadlock (PostgreSQL; SQLite has one writer at a time). A job that ran nothing costs one
    read and one write: it is settled at $0 with no ledger entry."""
    conn = await db.connection()
    if conn.dialect.name == "postgresql":
        await db.execute(select(Job.id).where(Job.id == job_id).with_for_update())
    row = (await db.execute(OPEN_HOLD_AND_USAGE.where(Hold.job_id == job_id))).first()
    if row is None:
        return None
    hold_id, account_id, held, price, billed = row
    held, price, billed_s = Decimal(held), Decimal(price), float(billed)
    charged = min(usage_usd(billed_s, price), held)
    ledger_id = new_id("led") if charged > 0 else None
    now = utcnow()
    moved = await db.execute(
        update(Hold)
        .where(Hold.id == hold_id, Hold.status == OPEN)
        .values(
            status=SETTLED,
            billed_s=billed_s,
            settled_usd=charged,
            ledger_id=ledger_id,
            settled_at=now,
        )
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return None  # another path settled it first
    if ledger_id is not None:
        db.add(
            LedgerEntry(
                id=ledger_id,
                account_id=account_id,
                kind="debit",
                amount_usd=-charged,
                job_id=job_id,
                memo=f"job {job_id}: {billed_s:.3f} task-seconds at ${price:.6f}/h",
                created_at=now,
            )
        )
        await db.execute(update(Job).where(Job.id == job_id).values(charged_usd=charged))
        await db.flush()
    return Charge(hold_id, billed_s, charged, held - charged, ledger_id)


def job_price(minimums: Mapping[str, Any], settings: Settings | None) -> Decimal:
    """USD per task-hour of a job needing ``minimums`` (``computalot.billing.prices``)."""
    return price_table(settings).usd_per_hour(minimums)


async def hold_job(
    db: AsyncSession, job: Job, usd_per_hour: Decimal, settings: Settings | None
) -> Hold:
    """The submit's hold for ``job`` (its ``held_usd`` already set, its row flushed, the
    account locked); an exempt admin's is recorded but never refuses."""
    exempt = False
    if settings is not None and settings.billing_exempt_admins:
        role = await db.scalar(select(Account.role).where(Account.id == job.account_id))
        exempt = role == "admin"
    return await place_hold(
        db,
        job.account_id,
        job.id,
        Decimal(job.held_usd),
        usd_per_hour,
        exempt=exempt,
        settings=settings,
    )
