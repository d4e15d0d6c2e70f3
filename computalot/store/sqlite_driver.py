"""SQLite through aiosqlite with one thread hop per statement, or none.

SQLAlchemy's aiosqlite adapter makes three or four round trips to aiosqlite's connection thread
for every statement (open a cursor, execute, fetch, close), each two thread switches. This
adapter runs the whole statement as one call on the same connection thread, so transactions,
locking and errors are exactly aiosqlite's; only the hops go (what that saves: bench/README.md).

*Inline* engines skip the hop too: a statement runs on the event loop's thread with SQLite's
busy timeout at zero, so it never sleeps there (an executemany of more than INLINE_MAX_ROWS
rows still goes to the thread). Reads never wait in WAL mode; a write that finds another
process holding the write lock fails at once with SQLITE_BUSY and is run again on the
connection thread with the usual busy timeout, which waits without blocking the loop.

It needs two private parts of aiosqlite (``Connection._execute`` and ``Connection._conn``) and
SQLAlchemy 2.1's adapter layout; where they are missing :func:`sqlite_dbapi` gives the stock
adapter's statements, with the stream closing below.

*No statement outlives its transaction.* Python's sqlite3 (legacy transaction control, Python
< 3.12's only mode) opens no transaction for a SELECT: each runs in autocommit, and SQLite keeps
the connection's read snapshot for as long as any of its statements is un-reset. A server-side
cursor (``stream``, ``yield_per``) left before its last row, as a ``break`` or an exception in an
``async for`` leaves it, stays open until the garbage collector frees it; the pool's
reset-on-return ``rollback()`` does nothing (``in_transaction`` is False, so no ROLLBACK is
sent); and every later request that checks that connection out reads the old snapshot. That is
how a key made by ``computalot admin create-account`` stayed "unknown API key" on the API:
``GET /jobs?tag=`` on an account with more than 500 jobs left such a cursor in a replica's pool
(stock aiosqlite adapter included). So every adapter here closes the server-side cursors still
open on a connection when it commits, rolls back (SQLAlchemy does one of the two before a
connection goes back to the pool) or closes, as PostgreSQL does with a transaction's cursors.
"""

from __future__ import annotations

import collections
import sqlite3
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util.concurrency import await_

#: SQLite's primary result code for "another connection holds the lock" (extended codes such as
#: SQLITE_BUSY_SNAPSHOT share it in their low byte).
SQLITE_BUSY = 5
#: How long a write waits for another process's write lock (off the event loop's thread).
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: An executemany of more rows than this (a 100,000-task submit) runs on the connection thread
#: even for an inline engine, so the event loop is never held for long.
INLINE_MAX_ROWS = 500


def is_busy(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return (
        isinstance(exc, sqlite3.OperationalError)
        and code is not None
        and code & 0xFF == SQLITE_BUSY
    )


def _run(conn: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> Any:
    """The whole statement, start to end (on aiosqlite's connection thread, or inline)."""
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _waiting(busy_timeout_ms: int, fn: Any, conn: sqlite3.Connection, *args: Any) -> Any:
    """``fn`` with a busy timeout: an inline statement that found the lock taken, run again on
    the connection thread, where waiting for the lock blocks nobody."""
    conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}").close()
    try:
        return fn(conn, *args)
    finally:
        conn.execute("PRAGMA busy_timeout=0").close()


def _commit(conn: sqlite3.Connection) -> None:
    conn.commit()


def _rollback(conn: sqlite3.Connection) -> None:
    conn.rollback()


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A client-side cursor whose statements each cost one round trip to the thread."""

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: Any) -> None:  # no aiosqlite cursor is opened
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = {}  # type: ignore[assignment]
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: Any = None
        self._arraysize = 1

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    async def _async_soft_close(self) -> None:
        return None  # rows are already fetched; there is no cursor to close

    def close(self) -> None:
        self._rows.clear()

    async def _statement(self, operation: Any, parameters: Any, many: bool) -> None:
        adapt = self._adapt_connection
        busy_ms: int | None = getattr(adapt, "inline_busy_ms", None)
        args = (operation, parameters, many)
        async with adapt._execute_mutex:
            conn = self._connection
            if busy_ms is None:
                result = await conn._execute(_run, conn._conn, *args)
            elif many and len(parameters) > INLINE_MAX_ROWS:
                result = await conn._execute(_waiting, busy_ms, _run, conn._conn, *args)
            else:
                try:
                    result = _run(conn._conn, *args)
                except sqlite3.OperationalError as exc:
                    if not is_busy(exc):
                        raise
                    result = await conn._execute(_waiting, busy_ms, _run, conn._conn, *args)
            description, rows, rowcount, lastrowid = result
        self._description = description
        self._rows = collections.deque(rows)
        self._rowcount = rowcount
        self._lastrowid = lastrowid

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        await self._statement(operation, parameters, False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        await self._statement(operation, seq_of_parameters, True)


class StreamClosingConnection(AsyncAdapt_aiosqlite_connection):
    """The stock connection, except that the server-side cursors opened on it are closed when
    its transaction ends (see the module's docstring): a pooled connection never carries a read
    snapshot from one checkout to the next."""

    __slots__ = ("_streams",)

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self._streams: list[Any] = []

    def cursor(self, server_side: bool = False) -> Any:
        cursor = super().cursor(server_side)
        if server_side:
            self._streams.append(cursor)
        return cursor

    def close_streams(self) -> None:
        """Close every server-side cursor of this transaction (closing one twice is a no-op)."""
        if not self._streams:
            return
        streams, self._streams = self._streams, []
        for stream in streams:
            try:
                stream.close()
            except Exception as error:
                self._handle_exception(error)

    def commit(self) -> None:
        self.close_streams()
        super().commit()

    def rollback(self) -> None:
        self.close_streams()
        super().rollback()

    def close(self) -> None:
        self._streams = []  # closing the connection finalizes its statements
        super().close()


class OneHopConnection(StreamClosingConnection):
    __slots__ = ()
    _cursor_cls = OneHopCursor
    #: None: every statement goes to the connection thread. A number: statements run inline
    #: and a busy one is retried on the thread with this busy timeout (ms).
    inline_busy_ms: int | None = None

    def _finish(self, fn: Any) -> None:
        conn = self._connection
        try:
            try:
                fn(conn._conn)
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                await_(conn._execute(_waiting, self.inline_busy_ms, fn, conn._conn))
        except Exception as error:
            self._handle_exception(error)

    def commit(self) -> None:
        if self.inline_busy_ms is None:
            super().commit()
        else:
            self.close_streams()
            self._finish(_commit)

    def rollback(self) -> None:
        if self.inline_busy_ms is None:
            super().rollback()
        else:
            self.close_streams()
            self._finish(_rollback)


class InlineConnection(OneHopConnection):
    __slots__ = ()
    inline_busy_ms = SQLITE_BUSY_TIMEOUT_MS


class StreamClosingDbapi(AsyncAdapt_aiosqlite_dbapi):
    """The stock adapter, its connections wrapped in :class:`StreamClosingConnection`."""

    connection_cls: type[StreamClosingConnection] = StreamClosingConnection

    def connect(self, *arg: Any, **kw: Any) -> StreamClosingConnection:
        stock = super().connect(*arg, **kw)
        return self.connection_cls(self, stock._connection)


class OneHopDbapi(StreamClosingDbapi):
    def __init__(self, aiosqlite: Any, sqlite: Any, *, inline: bool = False) -> None:
        super().__init__(aiosqlite, sqlite)
        self.connection_cls = InlineConnection if inline else OneHopConnection

    def connect(self, *arg: Any, **kw: Any) -> StreamClosingConnection:
        if self.connection_cls is InlineConnection:
            kw["check_same_thread"] = False  # the loop thread uses the connection too
        return super().connect(*arg, **kw)


def sqlite_dbapi(*, inline: bool = False) -> StreamClosingDbapi:
    """The adapter for ``create_async_engine(module=...)``: the one-hop one, or the stock one
    (with its streams closed at the end of a transaction) where aiosqlite or SQLAlchemy's adapter
    (``_execute_async``, SQLAlchemy ≥ 2.1) do not have the shape the one-hop one needs.
    ``inline``: statements run on the caller's thread (see the module's docstring)."""
    needed = (
        hasattr(aiosqlite.Connection, "_execute"),
        hasattr(aiosqlite.Connection, "_conn"),
        hasattr(AsyncAdapt_aiosqlite_cursor, "_execute_async"),
        hasattr(AsyncAdapt_aiosqlite_cursor, "_executemany_async"),
    )
    if all(needed):
        return OneHopDbapi(aiosqlite, sqlite3, inline=inline)
    return StreamClosingDbapi(aiosqlite, sqlite3)
