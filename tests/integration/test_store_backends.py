"""The store layer on both backends it supports: SQLite (a temp file) and real PostgreSQL.

Each backend gets a fresh database per module; the same assertions run against both, so a query
that only works on one of them fails here.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, inspect, select, text

from computalot.auth.principal import authenticate
from computalot.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from computalot.ids import new_id
from computalot.projects import service as projects
from computalot.settings import load_settings
from computalot.store import accounts
from computalot.store.db import Store
from computalot.store.events import write_events
from computalot.store.jobs import get_job, list_events, list_jobs, stream_events
from computalot.store.migrate import upgrade
from computalot.store.models import Event, LedgerEntry, WalletSession
from computalot.timeutil import utcnow
from serve_app.app import create_app
from tests.support.store_rows import job_row, new_member

EXPECTED_TABLES = {
    "accounts",
    "api_keys",
    "wallet_sessions",
    "wallet_challenges",
    "wallet_whitelist",
    "feedback",
    "projects",
    "revisions",
    "jobs",
    "tasks",
    "events",
    "ledger",
    "project_events",
    "project_kv",
    "project_nodes",
}


async def conn_compare(store: Store) -> list[Any]:
    """Alembic's autogenerate diff between the migrated database and the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from computalot.store.models import Base

    def diff(sync_conn: Any) -> list[Any]:
        context = MigrationContext.configure(sync_conn, opts={"compare_type": False})
        return list(compare_metadata(context, Base.metadata))

    async with store.engine.connect() as conn:
        return await conn.run_sync(diff)


async def test_schema_is_migrated_and_upgrade_is_idempotent(store: Store) -> None:
    await upgrade(store.engine)
    await upgrade(store.engine)
    async with store.engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    assert tables >= EXPECTED_TABLES, EXPECTED_TABLES - tables
    assert len(versions) == 1
    drift = await conn_compare(store)
    assert drift == [], f"migrations and models disagree: {drift}"
    await store.ping()
    assert store.dialect in ("sqlite", "postgresql")


async def test_accounts_keys_and_authenticate(store: Store) -> None:
    async with store.sessions() as db:
        account = await accounts.create_account(db, name="alice", role="viewer")
        key, token = await accounts.create_key(db, account.id, name="k1")
        await db.commit()
    assert token.startswith("flk_") and account.id.startswith("acct_")
    assert key.token_hash != token and token not in key.token_hash

    async with store.sessions() as db:
        principal = await authenticate(db, token)
        assert (principal.account_id, principal.role, principal.credential) == (
            account.id,
            "viewer",
            "flk",
        )
        assert principal.credential_id == key.id
        assert not principal.can_write and not principal.is_admin
        listed = await accounts.list_keys(db, account.id)
        assert [k.id for k in listed] == [key.id]

    async with store.sessions() as db:
        await accounts.revoke_key(db, key.id)
        await db.commit()
    async with store.sessions() as db:
        with pytest.raises(Unauthorized, match="revoked"):
            await authenticate(db, token)
        for garbage in ("", "garbage", "flk_short", "flk_" + "A" * 43, "fls_" + "B" * 43):
            with pytest.raises(Unauthorized):
                await authenticate(db, garbage)
        with pytest.raises(NotFound):
            await accounts.create_key(db, "acct_missing")
        with pytest.raises(NotFound):
            await accounts.revoke_key(db, "key_missing")


async def test_bad_role_names_the_field(store: Store) -> None:
    async with store.sessions() as db:
        with pytest.raises(ValidationFailed) as caught:
            await accounts.create_account(db, name="x", role="owner")
    assert caught.value.details[0]["loc"] == ["role"]


async def test_wallet_session_expiry(store: Store) -> None:
    account_id = await new_member(store, "wallet")
    async with store.sessions() as db:
        sess, token = await accounts.create_wallet_session(db, account_id, ttl_s=3600)
        await db.commit()
    async with store.sessions() as db:
        principal = await authenticate(db, token)
        assert principal.credential == "fls" and principal.account_id == account_id
        row = await db.get(WalletSession, sess.id)
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
        await db.commit()
    async with store.sessions() as db:
        with pytest.raises(Unauthorized, match="expired"):
            await authenticate(db, token)


async def test_money_and_times_round_trip_exactly(store: Store) -> None:
    account_id = await new_member(store, "money")
    async with store.sessions() as db:
        await accounts.grant_credit(db, account_id, Decimal("0.000001"), "tiny")
        await accounts.grant_credit(db, account_id, Decimal("12345678.123456"), "big")
        await db.commit()
    async with store.sessions() as db:
        total = (
            await db.execute(
                select(func.sum(LedgerEntry.amount_usd)).where(LedgerEntry.account_id == account_id)
            )
        ).scalar_one()
        assert Decimal(str(total)) == Decimal("12345678.123457")
        entries = (
            await db.execute(select(LedgerEntry).where(LedgerEntry.account_id == account_id))
        ).scalars()
        for entry in entries:
            assert entry.created_at.tzinfo is not None
            assert entry.created_at.utcoffset() == timedelta(0)
            assert abs(entry.created_at - datetime.now(UTC)) < timedelta(minutes=5)
        with pytest.raises(ValidationFailed):
            await accounts.grant_credit(db, account_id, Decimal("0"))


async def test_projects_are_scoped_and_names_conflict(store: Store) -> None:
    alice, bob, carol = [await new_member(store, n) for n in ("alice", "bob", "carol")]
    async with store.sessions() as db:
        mine = await projects.create_project(
            db, alice, name="shared-name", remote_dir=None, description="a"
        )
        await db.commit()
    async with store.sessions() as db:
        with pytest.raises(Conflict) as caught:
            await projects.create_project(
                db, alice, name="shared-name", remote_dir=None, description="again"
            )
        assert caught.value.status == 409
    async with store.sessions() as db:
        # The same name in another account is fine.
        theirs = await projects.create_project(
            db, bob, name="shared-name", remote_dir=None, description="b"
        )
        await db.commit()
    assert theirs.id != mine.id
    async with store.sessions() as db:
        assert (await projects.get_project(db, alice, "shared-name")).id == mine.id
        assert (await projects.get_project(db, bob, "shared-name")).id == theirs.id
        with pytest.raises(NotFound):
            await projects.get_project(db, carol, "shared-name")
        assert [p.id for p, _rev in await projects.list_projects(db, alice)] == [mine.id]
        assert await projects.list_projects(db, carol) == []
    async with store.sessions() as db:
        with pytest.raises(ValidationFailed) as bad:
            await projects.create_project(
                db, alice, name="Bad Name", remote_dir=None, description=None
            )
        assert bad.value.details[0]["loc"] == ["name"]


async def test_jobs_are_scoped_to_their_account(store: Store) -> None:
    owner, other = await new_member(store, "owner"), await new_member(store, "other")
    job = job_row(owner)
    async with store.sessions() as db:
        db.add(job)
        await db.commit()
    async with store.sessions() as db:
        found = await get_job(db, owner, job.id)
        assert found.id == job.id and found.payload == {"x": 1} and found.tags == ["t1"]
        with pytest.raises(NotFound):
            await get_job(db, other, job.id)
        with pytest.raises(NotFound):
            await get_job(db, owner, new_id("job"))
        kwargs: dict[str, Any] = {
            "status": None,
            "project": None,
            "tag": None,
            "type": None,
            "limit": 10,
            "cursor": None,
        }
        mine, _ = await list_jobs(db, owner, **kwargs)
        assert [j.id for j in mine] == [job.id]
        theirs, _ = await list_jobs(db, other, **kwargs)
        assert theirs == []
        tagged, _ = await list_jobs(db, owner, **{**kwargs, "tag": "t1"})
        assert [j.id for j in tagged] == [job.id]
        for near in ("t", "t12", "T1", '"t1"', "t1%"):  # whole tags only, compared exactly
            assert (await list_jobs(db, owner, **{**kwargs, "tag": near}))[0] == []


async def test_tag_filter_pages_in_sql(store: Store) -> None:
    owner = await new_member(store, "tags")
    tags = [["a", 'q"uo'], ["b"], ["a"], [], ["a", "b"]]
    async with store.sessions() as db:
        rows = [job_row(owner, tags=t) for t in tags]
        db.add_all(rows)
        await db.commit()
    kwargs: dict[str, Any] = {"status": None, "project": None, "type": None}
    async with store.sessions() as db:
        seen: list[str] = []
        cursor = None
        while True:
            page, cursor = await list_jobs(db, owner, tag="a", limit=2, cursor=cursor, **kwargs)
            seen += [j.id for j in page]
            if cursor is None:
                break
        wanted = {r.id for r, t in zip(rows, tags, strict=True) if "a" in t}
        assert len(seen) == 3 and set(seen) == wanted
        quoted, _ = await list_jobs(db, owner, tag='q"uo', limit=10, cursor=None, **kwargs)
        assert [j.id for j in quoted] == [rows[0].id]


async def test_events_keep_insertion_order(store: Store) -> None:
    owner, other = await new_member(store, "ev"), await new_member(store, "ev2")
    job = job_row(owner)
    names = ["queued", "started", "progress", "progress", "completed", "end"]
    async with store.sessions() as db:
        db.add(job)
        await db.flush()
        for i, name in enumerate(names):
            db.add(
                Event(
                    job_id=job.id,
                    account_id=owner,
                    event=name,
                    data={"i": i},
                    created_at=utcnow(),
                )
            )
            await db.flush()
        await db.commit()
    async with store.sessions() as db:
        events = await list_events(db, owner, [job.id], after=0, limit=100)
        ids = [e.id for e in events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert [e.event for e in events] == names
        assert [e.data["i"] for e in events] == list(range(len(names)))
        later = await list_events(db, owner, [job.id], after=ids[2], limit=100)
        assert [e.id for e in later] == ids[3:]
        page = await list_events(db, owner, [job.id], after=0, limit=2)
        assert [e.id for e in page] == ids[:2]
        # Another account never reads these events, even naming the job.
        assert await list_events(db, other, [job.id], after=0, limit=100) == []


async def test_concurrent_event_writers_become_visible_in_id_order(store: Store) -> None:
    """Two writers (the dispatcher and the event hub) insert events at once: a reader following
    ``id > last`` must never see a later id before an earlier one is visible, or it would skip
    the earlier event for good. Writer A inserts, then holds its transaction open while B
    inserts and commits."""
    owner = await new_member(store, "evw")
    job = job_row(owner)
    async with store.sessions() as db:
        db.add(job)
        await db.commit()
    a_inserted = asyncio.Event()
    stop = asyncio.Event()

    async def writer_a() -> None:
        async with store.sessions() as db:
            await write_events(db, [(job.id, owner, "task", {"w": "a", "i": i}) for i in range(3)])
            a_inserted.set()
            await asyncio.sleep(0.4)
            await db.commit()

    async def writer_b() -> None:
        await a_inserted.wait()
        async with store.sessions() as db:
            await write_events(
                db, [(job.id, owner, "output", {"w": "b", "i": i}) for i in range(2)]
            )
            await db.commit()

    async def reader() -> list[int]:
        after, seen = 0, []
        while True:
            done = stop.is_set()
            async with store.sessions() as db:
                rows = await stream_events(db, owner, [job.id], after=after, limit=100)
            seen += [row[0] for row in rows]
            after = rows[-1][0] if rows else after
            if done:
                return seen
            await asyncio.sleep(0.01)

    reading = asyncio.create_task(reader())
    await asyncio.gather(writer_a(), writer_b())
    stop.set()
    seen = await reading
    async with store.sessions() as db:
        stored = await stream_events(db, owner, [job.id], after=0, limit=100)
    assert [row[0] for row in stored] == seen, "a reader following id > last skipped events"
    assert [row[3]["w"] for row in stored] == ["a", "a", "a", "b", "b"]


# ---- the API on each backend: hostile input is a 4xx, never a 500 ------------------------------


async def api_client(store: Store, tmp_path: Any) -> tuple[httpx.AsyncClient, dict[str, str]]:
    """The app in-process on this backend's store, and an admin's auth header."""
    settings = load_settings(data_dir=tmp_path, database_url=store.url)
    async with store.sessions() as db:
        admin = await accounts.create_account(
            db, name=f"admin-{uuid.uuid4().hex[:6]}", role="admin"
        )
        _key, token = await accounts.create_key(db, admin.id)
        await db.commit()
    app = create_app(settings, store=store)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    return client, {"Authorization": f"Bearer {token}"}


async def test_nul_characters_are_not_a_server_error(
    store: Store, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    client, _admin = await api_client(store, tmp_path)
    async with client:
        answer = await client.post(
            "/api/v1/feedback", json={"type": "bug", "title": "a\x00b", "description": "d"}
        )
    assert answer.status_code in (201, 422), answer.text


@pytest.mark.parametrize("amount", [1e20, 1e-7])
async def test_grant_amount_outside_the_ledger_precision_is_422(
    store: Store, tmp_path: Any, amount: float
) -> None:
    client, admin = await api_client(store, tmp_path)
    async with client:
        target = await new_member(store, "grantee")
        answer = await client.post(
            f"/api/v1/admin/accounts/{target}/grants", json={"amount_usd": amount}, headers=admin
        )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["details"][0]["loc"] == ["amount_usd"]
