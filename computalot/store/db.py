"""Engine and session factory for the store: SQLite (WAL) by default, PostgreSQL by URL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from computalot.private_files import private_sqlite_file
from computalot.store import jsoncodec
from computalot.store.sqlite_driver import SQLITE_BUSY_TIMEOUT_MS, OneHopDbapi, sqlite_dbapi

WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024


def make_engine(url: str, *, pool_size: int = 5, inline: bool = False) -> AsyncEngine:
    """An async engine tuned for the backend behind ``url``.

    SQLite: WAL lets readers run beside the single writer; ``busy_timeout`` makes a writer in
    another process (Serve replica, dispatcher, event hub) wait instead of failing; statements
    go through :mod:`computalot.store.sqlite_driver` (one thread hop each, or none when
    ``inline``: then the busy timeout is zero and a statement that finds the write lock taken
    waits on the connection thread instead), which also closes a transaction's server-side
    cursors when it ends, so a pooled connection never keeps an old read snapshot and a write
    by another process (the admin CLI, the dispatcher) is seen by the next transaction.
    """
    if url.startswith("sqlite"):
        # Before any connection: SQLite gives the -wal/-shm files the database file's mode.
        private_sqlite_file(url)
        extra: dict[str, Any] = {}
        dbapi = sqlite_dbapi(inline=inline) if url.startswith("sqlite+aiosqlite") else None
        if dbapi is not None:
            extra["module"] = dbapi
        inlined = inline and isinstance(dbapi, OneHopDbapi)  # else thread hops, stock statements
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=10,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            json_serializer=jsoncodec.dumps,
            json_deserializer=jsoncodec.loads,
            **extra,
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={0 if inlined else SQLITE_BUSY_TIMEOUT_MS}")
            # The WAL grows to the largest transaction (a cycle storing big results); without a
            # limit it keeps that size on disk after every checkpoint.
            cur.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
            cur.close()

        return engine
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=10,
        pool_pre_ping=True,
        json_serializer=jsoncodec.dumps,
        json_deserializer=jsoncodec.loads,
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


class Store:
    """One engine + session factory per process (Serve replica, dispatcher, event hub, CLI).

    ``inline``: SQLite statements run on the event loop's thread, where each costs a tenth of a
    millisecond instead of two thread switches (see ``sqlite_driver``): the dispatcher, the
    event hub and the API's replicas use it; the CLI and tests may use either."""

    def __init__(self, url: str, *, inline: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, inline=inline)
        self.sessions = make_sessionmaker(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def close(self) -> None:
        await self.engine.dispose()
