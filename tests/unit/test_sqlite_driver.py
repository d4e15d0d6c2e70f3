"""computalot.store.sqlite_driver: the one-hop aiosqlite adapter behaves like the stock one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from computalot.store.db import make_engine
from computalot.store.sqlite_driver import OneHopCursor

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


def test_statements_rows_returning_executemany_and_errors(tmp_path: Path) -> None:
    async def scenario() -> None:
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'one.db'}")
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
