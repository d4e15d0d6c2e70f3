"""computalot.store.sqlite_driver: a server-side cursor never outlives its transaction.

A stream left before its last row kept SQLite's read snapshot on its pooled connection, so the
next request on that connection did not see what another process had committed since.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from computalot.store.db import make_engine
from computalot.store.sqlite_driver import (
    InlineConnection,
    OneHopConnection,
    StreamClosingConnection,
    StreamClosingDbapi,
)

META = MetaData()
ROWS = Table(
    "rows", META, Column("id", Integer, primary_key=True), Column("s", String, nullable=False)
)
#: More rows than one ``yield_per`` batch, so a stream left early has an un-reset statement.
SEEDED = 1200
BATCH = 500
KINDS = {"stock": StreamClosingConnection, "one-hop": OneHopConnection, "inline": InlineConnection}


def _engine(url: str, kind: str) -> AsyncEngine:
    if kind == "stock":  # what make_engine falls back to where the one-hop adapter cannot run
        return create_async_engine(
            url, module=StreamClosingDbapi(aiosqlite, sqlite3), pool_size=1, max_overflow=0
        )
    return make_engine(url, pool_size=1, inline=kind == "inline")


def _write_from_another_process(path: Path, value: str) -> None:
    """A plain sqlite3 writer in its own process, as the admin CLI is beside the API."""
    script = (
        "import sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1])\n"
        "conn.execute('INSERT INTO rows (s) VALUES (?)', (sys.argv[2],))\n"
        "conn.commit()\n"
    )
    subprocess.run([sys.executable, "-c", script, str(path), value], check=True, timeout=60)


async def _seed(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        await conn.run_sync(META.create_all)
        await conn.execute(insert(ROWS), [{"s": f"r{i}"} for i in range(SEEDED)])
    await engine.dispose()


async def _count_on(conn: Any, value: str) -> int:
    query = select(func.count()).select_from(ROWS).where(ROWS.c.s == value)
    return int((await conn.execute(query)).scalar_one())


async def _count(engine: AsyncEngine, value: str) -> int:
    async with engine.connect() as conn:
        return await _count_on(conn, value)


async def _raw(conn: Any) -> Any:
    return (await conn.get_raw_connection()).dbapi_connection


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("how", ["break", "exception", "commit"])
def test_a_stream_left_early_keeps_no_snapshot(tmp_path: Path, kind: str, how: str) -> None:
    """``break`` and an exception leave the stream to the session's end, ``commit`` ends the
    transaction under it: either way the same pooled connection sees a write made by another
    process right after."""
    path = tmp_path / "rows.db"
    url = f"sqlite+aiosqlite:///{path}"

    async def scenario() -> None:
        await _seed(url)
        engine = _engine(url, kind)
        async with engine.connect() as conn:
            first = await _raw(conn)
            assert type(first) is KINDS[kind]
            stream = await conn.stream(select(ROWS.c.id).execution_options(yield_per=BATCH))
            seen = 0
            try:
                async for _row in stream:
                    seen += 1
                    if seen == 3 and how == "exception":
                        raise LookupError("a row the caller could not handle")
                    if seen == 3:
                        break
            except LookupError:
                pass
            if how == "commit":
                await conn.commit()
                _write_from_another_process(path, "during")
                assert await _count_on(conn, "during") == 1
        _write_from_another_process(path, "after")
        async with engine.connect() as conn:
            assert await _raw(conn) is first  # the very connection the stream was left on
        assert await _count(engine, "after") == 1
        await engine.dispose()

    asyncio.run(scenario())


@pytest.mark.parametrize("kind", list(KINDS))
def test_streams_read_to_the_end_and_twice_in_a_transaction(tmp_path: Path, kind: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'rows.db'}"

    async def scenario() -> None:
        await _seed(url)
        engine = _engine(url, kind)
        async with engine.connect() as conn:
            for _ in range(2):
                stream = await conn.stream(select(ROWS.c.id).execution_options(yield_per=BATCH))
                assert [row[0] async for row in stream] == list(range(1, SEEDED + 1))
        async with engine.connect() as conn:  # the same connection, its streams let go
            assert (await _raw(conn))._streams == []
        await engine.dispose()

    asyncio.run(scenario())
