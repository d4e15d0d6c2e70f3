"""computalot.store.sqlite_driver: the one-hop aiosqlite adapter behaves like the stock one."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from computalot.store.db import make_engine
from computalot.store.sqlite_driver import (
    INLINE_MAX_ROWS,
    InlineConnection,
    OneHopConnection,
    OneHopCursor,
)

META = MetaData()
ITEMS = Table(
    "items",
    META,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String, unique=True, nullable=False),
    Column("n", Integer, nullable=False, default=0),
)


def _run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.mark.parametrize("inline", [False, True], ids=["one-hop", "inline"])
def test_statements_rows_returning_executemany_and_errors(tmp_path: Path, inline: bool) -> None:
    async def scenario() -> None:
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'one.db'}", inline=inline)
        async with engine.begin() as conn:
            await conn.run_sync(META.create_all)
        async with engine.begin() as conn:
            raw = await conn.get_raw_connection()
            assert isinstance(raw.dbapi_connection.cursor(), OneHopCursor)  # type: ignore[union-attr]
            first = await conn.execute(insert(ITEMS).values(name="a"))
            assert first.inserted_primary_key == (1,)  # lastrowid
            await conn.execute(insert(ITEMS), [{"name": "b"}, {"name": "c"}])  # executemany
            bumped = await conn.execute(
                update(ITEMS).where(ITEMS.c.name != "a").values(n=ITEMS.c.n + 5)
            )
            assert bumped.rowcount == 2
            back = await conn.execute(
                update(ITEMS)
                .where(ITEMS.c.name == "c")
                .values(n=7)
                .returning(ITEMS.c.id, ITEMS.c.n)
            )
            assert back.all() == [(3, 7)]
            rows = (await conn.execute(select(ITEMS.c.name, ITEMS.c.n).order_by(ITEMS.c.id))).all()
            assert rows == [("a", 0), ("b", 5), ("c", 7)]
            assert (await conn.execute(select(ITEMS).where(ITEMS.c.id == 99))).first() is None
        with pytest.raises(IntegrityError):  # the driver's error, translated as usual
            async with engine.begin() as conn:
                await conn.execute(insert(ITEMS).values(name="a"))
        with pytest.raises(OperationalError):
            async with engine.begin() as conn:
                await conn.execute(text("SELECT * FROM no_such_table"))
        async with engine.begin() as conn:  # the failed transactions left nothing behind
            await conn.execute(insert(ITEMS).values(name="d"))
            await conn.rollback()
        async with engine.connect() as conn:
            names = (await conn.execute(select(ITEMS.c.name).order_by(ITEMS.c.id))).scalars()
            assert list(names) == ["a", "b", "c"]
        await engine.dispose()

    _run(scenario())


def test_streamed_results_keep_working(tmp_path: Path) -> None:
    """Server-side cursors (stream) still use aiosqlite's own cursor."""

    async def scenario() -> None:
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'two.db'}")
        async with engine.begin() as conn:
            await conn.run_sync(META.create_all)
            await conn.execute(insert(ITEMS), [{"name": f"n{i}"} for i in range(250)])
        async with engine.connect() as conn:
            result = await conn.stream(select(ITEMS.c.id).order_by(ITEMS.c.id))
            ids = [row[0] async for row in result]
        assert ids == list(range(1, 251))
        await engine.dispose()

    _run(scenario())


async def _statement_thread(engine: object) -> int:
    """The id of the thread a statement runs on (an SQL function that reports it)."""
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        raw = await conn.get_raw_connection()
        sqlite_conn = raw.dbapi_connection._connection._conn
        sqlite_conn.create_function("thread_id", 0, threading.get_ident)
        return int((await conn.execute(text("SELECT thread_id()"))).scalar_one())


def test_inline_engine_runs_statements_on_the_loop_thread(tmp_path: Path) -> None:
    async def scenario() -> None:
        url = f"sqlite+aiosqlite:///{tmp_path / 'three.db'}"
        hop, inline = make_engine(url), make_engine(url, inline=True)
        loop_thread = threading.get_ident()
        assert await _statement_thread(hop) != loop_thread
        assert await _statement_thread(inline) == loop_thread
        async with inline.connect() as conn:
            raw = await conn.get_raw_connection()
            assert isinstance(raw.dbapi_connection, InlineConnection)
        async with hop.connect() as conn:
            raw = await conn.get_raw_connection()
            assert type(raw.dbapi_connection) is OneHopConnection
        await hop.dispose()
        await inline.dispose()

    _run(scenario())


def test_inline_write_waits_for_the_lock_without_blocking_the_loop(tmp_path: Path) -> None:
    """Another connection holds the write lock: the inline write fails fast on the loop thread,
    then waits on the connection thread (the loop keeps running) and lands after the commit."""

    async def scenario() -> None:
        url = f"sqlite+aiosqlite:///{tmp_path / 'four.db'}"
        holder, inline = make_engine(url), make_engine(url, inline=True)
        async with holder.begin() as conn:
            await conn.run_sync(META.create_all)
        ticks: list[float] = []
        bulk_done: list[float] = []

        async def ticker() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        async def write_inline() -> float:
            async with inline.begin() as conn:
                # more rows than INLINE_MAX_ROWS: sent to the connection thread directly, where
                # it must wait for the lock too (the busy timeout is set for that call)
                many = [{"name": f"bulk-{i}"} for i in range(INLINE_MAX_ROWS + 1)]
                await conn.execute(insert(ITEMS), many)
            bulk_done.append(time.monotonic())
            async with inline.begin() as conn:
                await conn.execute(insert(ITEMS).values(name="inline"))
            return time.monotonic()

        ticking = asyncio.create_task(ticker())
        async with holder.begin() as conn:
            await conn.execute(insert(ITEMS).values(name="holder"))
            writing = asyncio.create_task(write_inline())
            await asyncio.sleep(0.5)  # hold the write lock for half a second
            assert not writing.done()
            released = time.monotonic()
        written = await asyncio.wait_for(writing, 10)
        ticking.cancel()
        assert bulk_done[0] >= released and written >= released
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        assert max(gaps) < 0.25, "the event loop was blocked while the write waited"
        async with inline.connect() as conn:
            names = (await conn.execute(select(ITEMS.c.name).order_by(ITEMS.c.id))).scalars()
            names = list(names)
            assert names[:2] == ["holder", "bulk-0"] and names[-1] == "inline"
            assert len(names) == INLINE_MAX_ROWS + 3
            # the busy timeout is back at zero for the next inline statement
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one() == 0
        await holder.dispose()
        await inline.dispose()

    _run(scenario())
