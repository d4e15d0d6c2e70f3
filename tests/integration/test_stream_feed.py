"""A replica's stream feed on a real store (SQLite and PostgreSQL), outside Ray and HTTP.

Without an engine the feed reads the store on a timer instead of waiting on the hub; everything
else (catch-up, the shared reads, queues, de-duplication, stalled ends, revalidation) is what a
replica runs. Events are written the way the platform's two writers write them
(``computalot.store.events.write_events``).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from computalot.auth.principal import Principal
from computalot.store import accounts
from computalot.store.db import Store
from computalot.store.events import write_events
from computalot.store.jobs import stream_events
from serve_app import stream_feed, stream_subscriber
from serve_app.stream_feed import StreamFeed
from serve_app.stream_subscriber import sse
from tests.support.store_rows import job_row


@pytest.fixture
async def owner(store: Store) -> Principal:
    """An account and one of its API keys, as the caller a route would have authenticated."""
    async with store.sessions() as db:
        account = await accounts.create_account(db, name=f"feed-{uuid.uuid4().hex[:6]}")
        key, _token = await accounts.create_key(db, account.id)
        await db.commit()
    return Principal(account.id, "member", account.name, "flk", key.id)


@pytest.fixture
async def feed(store: Store) -> AsyncIterator[StreamFeed]:
    running = StreamFeed(store, engine=None)
    yield running
    running.stop()


async def new_job(store: Store, account_id: str, **extra: Any) -> str:
    row = job_row(account_id, **extra)
    async with store.sessions() as db:
        db.add(row)
        await db.commit()
    return row.id


async def write(store: Store, account_id: str, job_id: str, names: list[str]) -> None:
    async with store.sessions() as db:
        await write_events(
            db, [(job_id, account_id, name, {"n": i}) for i, name in enumerate(names)]
        )
        await db.commit()


async def stored_ids(store: Store, account_id: str, job_ids: list[str]) -> list[int]:
    async with store.sessions() as db:
        return [e[0] for e in await stream_events(db, account_id, job_ids, after=0, limit=10**6)]


def frames(text: str) -> list[dict[str, str]]:
    out = []
    for raw in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in raw.split("\n") if ": " in line)
        if fields:
            out.append(fields)
    return out


async def follow(body: AsyncIterator[str]) -> list[dict[str, str]]:
    return frames("".join([chunk async for chunk in body]))


def ids_of(got: list[dict[str, str]]) -> list[int]:
    return [int(f["id"]) for f in got if "id" in f]


async def test_streams_joining_while_events_are_written_get_every_event_once_in_order(
    store: Store, feed: StreamFeed, owner: Principal
) -> None:
    """Streams are added while the feed reads and writers write; each must see its jobs' whole
    history (caught up from the store, then live) with no gap and no repeat."""
    jobs = [await new_job(store, owner.account_id) for _ in range(3)]
    followers: list[tuple[list[str], asyncio.Task[list[dict[str, str]]]]] = []
    rng = random.Random(7)
    for round_ in range(40):
        await write(store, owner.account_id, rng.choice(jobs), ["progress"] * rng.randint(1, 4))
        if round_ % 2 == 0:
            watched = rng.sample(jobs, rng.randint(1, 3))
            body = sse(feed, owner, watched, 0, "")
            followers.append((watched, asyncio.create_task(follow(body))))
        await asyncio.sleep(rng.random() * 0.03)
    for job_id in jobs:
        await write(store, owner.account_id, job_id, ["end"])
    for watched, task in followers:
        got = await asyncio.wait_for(task, 30)
        assert ids_of(got) == await stored_ids(store, owner.account_id, watched), watched
        assert sum(f.get("event") == "end" for f in got) == len(watched)
    assert not feed.subscribers and not feed.by_job, "finished streams left the feed"


async def test_a_stream_that_stops_reading_is_bounded_then_catches_up_from_the_store(
    store: Store, feed: StreamFeed, owner: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_subscriber, "MAX_PENDING", 5)
    job_id = await new_job(store, owner.account_id)
    await write(store, owner.account_id, job_id, ["job"])
    body = sse(feed, owner, [job_id], 0, "")
    first = frames(await anext(body))  # caught up: the one stored event
    (sub,) = feed.subscribers
    for _ in range(6):
        await write(store, owner.account_id, job_id, ["output"] * 8)
    newest = (await stored_ids(store, owner.account_id, [job_id]))[-1]
    async with asyncio.timeout(10):
        while feed.after is None or feed.after < newest:
            await asyncio.sleep(0.05)
    assert sub.lagged and len(sub.pending) == 0, "an unread stream kept its events in memory"
    await write(store, owner.account_id, job_id, ["end"])
    rest = await follow(body)
    assert ids_of(first + rest) == await stored_ids(store, owner.account_id, [job_id])


async def test_many_streams_use_a_bounded_number_of_connections(
    store: Store, feed: StreamFeed, owner: Principal
) -> None:
    jobs = [await new_job(store, owner.account_id) for _ in range(4)]
    for job_id in jobs:
        await write(store, owner.account_id, job_id, ["job", "task"])
    most = 0
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal most
        while not stop.is_set():
            most = max(most, store.engine.pool.checkedout())  # type: ignore[attr-defined]
            await asyncio.sleep(0.002)

    sampler = asyncio.create_task(sample())
    tasks = [
        asyncio.create_task(follow(sse(feed, owner, [jobs[i % 4]], 0, ""))) for i in range(200)
    ]
    for _ in range(10):
        for job_id in jobs:
            await write(store, owner.account_id, job_id, ["progress"])
        await asyncio.sleep(0.05)
    for job_id in jobs:
        await write(store, owner.account_id, job_id, ["end"])
    results = await asyncio.wait_for(asyncio.gather(*tasks), 60)
    stop.set()
    await sampler
    for i, got in enumerate(results):
        assert ids_of(got) == await stored_ids(store, owner.account_id, [jobs[i % 4]])
    # catch-up sessions + the feed's own + the writer above
    assert most <= stream_feed.BACKFILL_SESSIONS + 2, most


async def test_a_revoked_key_closes_its_streams_with_an_error_event(
    store: Store, feed: StreamFeed, owner: Principal
) -> None:
    job_id = await new_job(store, owner.account_id)
    body = sse(feed, owner, [job_id], 0, "")
    task = asyncio.create_task(follow(body))
    await asyncio.sleep(0.3)
    assert not task.done()
    async with store.sessions() as db:
        await accounts.revoke_key(db, owner.credential_id)
        await db.commit()
    got = await asyncio.wait_for(task, stream_feed.REVALIDATE_S + 5)
    assert got[-1]["event"] == "error"
    assert '"code":"unauthorized"' in got[-1]["data"].replace(" ", "")


async def test_an_expired_wallet_sessions_streams_close(
    store: Store, feed: StreamFeed, owner: Principal
) -> None:
    async with store.sessions() as db:
        session, _token = await accounts.create_wallet_session(db, owner.account_id, ttl_s=1)
        await db.commit()
    caller = Principal(owner.account_id, "member", owner.name, "fls", session.id)
    job_id = await new_job(store, owner.account_id)
    got = await asyncio.wait_for(follow(sse(feed, caller, [job_id], 0, "")), 10)
    assert got[-1]["event"] == "error"
    assert "wallet session expired" in got[-1]["data"]


async def test_a_terminal_job_without_end_gets_one_built_from_the_stored_job(
    store: Store, feed: StreamFeed, owner: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_feed, "END_GRACE_S", 0.3)
    job_id = await new_job(store, owner.account_id, status="completed")
    await write(store, owner.account_id, job_id, ["job", "task"])  # no ``end`` was written
    got = await asyncio.wait_for(follow(sse(feed, owner, [job_id], 0, "")), 10)
    assert [f["event"] for f in got] == ["job", "task", "end"]
    assert "id" not in got[-1] and '"status":"completed"' in got[-1]["data"].replace(" ", "")


async def test_a_stream_added_while_a_read_is_under_way_misses_nothing(
    store: Store, feed: StreamFeed, owner: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feed's read is held after choosing its jobs; meanwhile a stream of another job opens,
    that job gets an event and so does a job the read covers. Finishing, the read must not move
    the feed's cursor past the new stream's event (the stream would never see it)."""
    busy, quiet = [await new_job(store, owner.account_id) for _ in range(2)]
    first = asyncio.create_task(follow(sse(feed, owner, [busy], 0, "")))
    while not feed.subscribers:
        await asyncio.sleep(0.01)
    held, release = asyncio.Event(), asyncio.Event()
    events_after = stream_feed.feed_store.events_after

    async def held_read(*args: Any, **kwargs: Any) -> Any:
        held.set()
        await release.wait()
        return await events_after(*args, **kwargs)

    monkeypatch.setattr(stream_feed.feed_store, "events_after", held_read)
    await asyncio.wait_for(held.wait(), 5)  # the feed's next read is under way
    monkeypatch.setattr(stream_feed.feed_store, "events_after", events_after)
    second = asyncio.create_task(follow(sse(feed, owner, [quiet], 0, "")))
    await asyncio.sleep(0.3)  # the new stream is opening (and catching up, unless it waits)
    await write(store, owner.account_id, quiet, ["progress"])
    await write(store, owner.account_id, busy, ["progress"])
    release.set()
    await asyncio.sleep(0.6)  # a few more reads
    for job_id in (busy, quiet):
        await write(store, owner.account_id, job_id, ["end"])
    await asyncio.wait_for(first, 10)
    got = await asyncio.wait_for(second, 10)
    assert ids_of(got) == await stored_ids(store, owner.account_id, [quiet])


async def test_a_quiet_stream_gets_heartbeats(
    store: Store, feed: StreamFeed, owner: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_subscriber, "HEARTBEAT_S", 0.3)
    job_id = await new_job(store, owner.account_id)
    body = sse(feed, owner, [job_id], 0, "")
    beats = 0
    async with asyncio.timeout(10):
        async for chunk in body:
            beats += chunk.count(": heartbeat\n\n")
            if beats >= 2:
                break
    await body.aclose()
    assert not feed.subscribers, "a closed stream left the feed"
