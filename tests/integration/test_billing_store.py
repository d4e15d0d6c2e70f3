"""Holds and settling in the store on both backends (SQLite and PostgreSQL), without Ray: the
submit path in-process, 100 submits at once over separate sessions, then every job ended the
way the dispatcher ends it (``engine.counters.finish_if_done``), some settled by two racing
sessions at once (docs/llms-full.md, "Billing")."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

from sqlalchemy import func, select, update

from computalot.billing.balance import balance
from computalot.billing.holds import settle_job, usage_usd
from computalot.engine.counters import bump_counters, finish_if_done
from computalot.errors import PaymentRequired
from computalot.ids import new_id
from computalot.jobs.quotas import Quotas
from computalot.jobs.submit import Limits, submit_job
from computalot.schemas.jobs import JobSubmit
from computalot.settings import load_settings
from computalot.states import JobStatus, TaskStatus
from computalot.store import accounts
from computalot.store.db import Store
from computalot.store.models import (
    Account,
    Hold,
    IdempotencyKey,
    Job,
    LedgerEntry,
    Quote,
    Revision,
    Task,
)
from computalot.timeutil import utcnow
from tests.support.store_rows import project_row

LIMITS = Limits(cluster_nodes=[], max_elements=100_000, quotas=Quotas(10**6, 10**6))
PRICE = Decimal("0.05")  # cpu-small per task-hour: 72 s hold = $0.001


async def funded_project(store: Store, credit: str) -> tuple[str, str]:
    """An account granted ``credit`` USD, and a project of it with a revision."""
    async with store.sessions() as db:
        account = await accounts.create_account(db, name=f"bill-{uuid.uuid4().hex[:6]}")
        await accounts.grant_credit(db, account.id, Decimal(credit), "test credit")
        now = utcnow()
        project = project_row(account.id, name="billed")
        db.add(project)
        await db.flush()
        revision = Revision(
            id=new_id("rev"),
            project_id=project.id,
            account_id=account.id,
            content_hash="0" * 64,
            size_bytes=0,
            files=[],
            manifest={},
            runtime_kind="python",
            warnings=[],
            path="/nonexistent",
            pushed_at=now,
        )
        db.add(revision)
        project.active_revision_id = revision.id
        await db.commit()
        return account.id, project.name


async def submit(
    store: Store, account_id: str, body: JobSubmit, key: str | None = None
) -> str | None:
    """One submit in its own session, committed as the route commits it; None on 402."""
    async with store.sessions() as db:
        try:
            done = await submit_job(db, account_id, body, idempotency_key=key, limits=LIMITS)
        except PaymentRequired as exc:
            assert exc.quote["kind"] == "shortfall"
            return None
        await db.commit()
        return done.job.id


async def count(store: Store, model: type, account_id: str) -> int:
    async with store.sessions() as db:
        query = select(func.count()).select_from(model).where(model.account_id == account_id)
        return int((await db.execute(query)).scalar_one())


async def run_to_the_end(store: Store, job_id: str, seconds: float) -> None:
    """What the dispatcher records for the job's one task: two attempts of ``seconds / 2``
    each, the last completed; the job is not finalised yet."""
    async with store.sessions() as db:
        for status in (TaskStatus.QUEUED, TaskStatus.COMPLETED):
            await db.execute(
                update(Task)
                .where(Task.job_id == job_id)
                .values(status=status, billed_s=Task.billed_s + seconds / 2)
            )
        await bump_counters(db, {job_id: {TaskStatus.QUEUED: -1, TaskStatus.COMPLETED: 1}})
        await db.commit()


async def finalise(store: Store, job_id: str) -> bool:
    """The dispatcher's end of the job (``finish_if_done`` finalises and settles); whether this
    session wrote the debit."""
    async with store.sessions() as db:
        events = await finish_if_done(db, {job_id})
        assert [e.event for e in events] == ["job", "end"]
        debit = await db.scalar(
            select(func.count()).select_from(LedgerEntry).where(LedgerEntry.job_id == job_id)
        )
        await db.commit()
        return bool(debit)


async def settle_alone(store: Store, job_id: str) -> bool:
    """Another path settling the same job (another replica, a planner's backstop)."""
    async with store.sessions() as db:
        charge = await settle_job(db, job_id)
        await db.commit()
        return charge is not None


async def test_a_refused_submit_creates_nothing(store: Store) -> None:
    account_id, project = await funded_project(store, "0.0005")
    body = JobSubmit.model_validate(
        {"project": project, "runner_command": ["true"], "timeout_s": 72}
    )
    assert await submit(store, account_id, body, key="k-1") is None
    for model in (Job, Task, Hold, IdempotencyKey):
        assert await count(store, model, account_id) == 0, model
    assert await count(store, Quote, account_id) == 1  # the shortfall quote outlives the 402
    async with store.sessions() as db:
        money = await balance(db, account_id)
    assert money.available_usd == Decimal("0.0005") and money.held_usd == 0


async def test_100_concurrent_submits_at_an_account_that_can_afford_10(store: Store) -> None:
    account_id, project = await funded_project(store, "0.01")
    body = JobSubmit.model_validate(
        {"project": project, "runner_command": ["true"], "timeout_s": 72}
    )
    made = await asyncio.gather(*(submit(store, account_id, body) for _ in range(100)))
    job_ids = [j for j in made if j is not None]
    assert len(job_ids) == 10
    assert await count(store, Job, account_id) == 10
    assert await count(store, Quote, account_id) == 90
    async with store.sessions() as db:
        money = await balance(db, account_id)
    assert money.held_usd == Decimal("0.01") and money.available_usd == 0
    # each job's task ran 10..19 s over two attempts; half of the jobs are then ended by the
    # dispatcher's path while another session settles them at the same moment
    ran = {job_id: 10.0 + i + 0.123 for i, job_id in enumerate(job_ids)}
    for i, (job_id, seconds) in enumerate(ran.items()):
        await run_to_the_end(store, job_id, seconds)
        if i % 2:
            wrote = await asyncio.gather(finalise(store, job_id), settle_alone(store, job_id))
            assert sum(wrote) >= 1
        else:
            assert await finalise(store, job_id)
        assert await settle_alone(store, job_id) is False  # settled: never again
    async with store.sessions() as db:
        entries = list(
            (
                await db.execute(select(LedgerEntry).where(LedgerEntry.account_id == account_id))
            ).scalars()
        )
        holds = list(
            (await db.execute(select(Hold).where(Hold.account_id == account_id))).scalars()
        )
        statuses = set(
            (await db.execute(select(Job.status).where(Job.account_id == account_id))).scalars()
        )
        money = await balance(db, account_id)
    assert statuses == {JobStatus.COMPLETED}
    assert len(holds) == 10 and {h.status for h in holds} == {"settled"}
    grants = sum((e.amount_usd for e in entries if e.kind == "grant"), Decimal(0))
    credits = sum((e.amount_usd for e in entries if e.kind == "credit"), Decimal(0))
    debits = [-e.amount_usd for e in entries if e.kind == "debit"]
    by_job = {e.job_id: -e.amount_usd for e in entries if e.kind == "debit"}
    assert len(by_job) == len(debits) == 10  # one per job, never two
    for job_id in job_ids:
        assert by_job[job_id] == usage_usd(ran[job_id], PRICE) > 0
    assert grants == Decimal("0.01")
    assert grants - sum(debits) + credits == money.ledger_usd
    assert money.held_usd == 0 and money.available_usd == money.ledger_usd > 0


async def test_a_big_fan_out_holds_for_every_task_at_submit(store: Store) -> None:
    account_id, project = await funded_project(store, "5")
    big = {"project": project, "runner_command": ["true"], "timeout_s": 72}
    big |= {"fan_out": {"by": "n"}, "payload": {"n": list(range(2500))}}
    async with store.sessions() as db:
        done = await submit_job(
            db, account_id, JobSubmit.model_validate(big), idempotency_key=None, limits=LIMITS
        )
        await db.commit()
    assert done.planning is not None and done.job.status == JobStatus.PLANNING
    async with store.sessions() as db:
        money = await balance(db, account_id)
        written = await db.scalar(select(func.count()).where(Task.job_id == done.job.id))
    assert written == 0  # its rows come later; its hold is already all 2,500 tasks'
    assert money.held_usd == Decimal("2.5") and money.available_usd == Decimal("2.5")
    big["payload"] = {"n": list(range(2501 + 2500))}  # $5.001 > $2.50 left
    assert await submit(store, account_id, JobSubmit.model_validate(big)) is None


async def test_an_exempt_admin_is_never_refused_and_still_billed(store: Store) -> None:
    account_id, project = await funded_project(store, "0.000001")
    async with store.sessions() as db:
        await db.execute(update(Account).where(Account.id == account_id).values(role="admin"))
        await db.commit()
    body = JobSubmit.model_validate(
        {"project": project, "runner_command": ["true"], "timeout_s": 72}
    )
    assert await submit(store, account_id, body) is None  # not exempt by default
    exempt = load_settings(billing_exempt_admins=True)
    async with store.sessions() as db:
        done = await submit_job(
            db, account_id, body, idempotency_key=None, limits=LIMITS, settings=exempt
        )
        await db.commit()
    async with store.sessions() as db:
        money = await balance(db, account_id)
    assert money.held_usd == Decimal("0.001") and money.available_usd < 0
    await run_to_the_end(store, done.job.id, 36.0)
    assert await finalise(store, done.job.id)
    async with store.sessions() as db:
        money = await balance(db, account_id)
    assert money.held_usd == 0
    assert money.ledger_usd == Decimal("0.000001") - usage_usd(36.0, PRICE)
