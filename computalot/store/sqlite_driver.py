"""SQLite through aiosqlite with one thread hop per statement.

SQLAlchemy's aiosqlite adapter makes three or four round trips to aiosqlite's connection thread
for every statement (open a cursor, execute, fetch, close), each two thread switches. This
adapter runs the whole statement as one call on the same connection thread, so transactions,
locking and errors are exactly aiosqlite's; only the hops go. Measured on a 2-core host: a
trivial statement 0.77 -> 0.38 ms idle; bench/dispatch.py (a) overhead 59-62 -> 54-57 ms.

It needs two private parts of aiosqlite (``Connection._execute`` and ``Connection._conn``) and
SQLAlchemy 2.1's adapter layout; :func:`one_hop_dbapi` returns None where they are missing and the
engine keeps the stock adapter.
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


def _run(conn: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> Any:
    """Runs on aiosqlite's connection thread: the whole statement, start to end."""
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
        async with self._adapt_connection._execute_mutex:
            conn = self._connection
            description, rows, rowcount, lastrowid = await conn._execute(
                _run, conn._conn, operation, parameters, many
            )
        self._description = description
        self._rows = collections.deque(rows)
        self._rowcount = rowcount
        self._lastrowid = lastrowid

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        await self._statement(operation, parameters, False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        await self._statement(operation, seq_of_parameters, True)


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneHopCursor


class OneHopDbapi(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        stock = super().connect(*arg, **kw)
        return OneHopConnection(self, stock._connection)


def one_hop_dbapi() -> OneHopDbapi | None:
    """The adapter for ``create_async_engine(module=...)``, or None where aiosqlite or
    SQLAlchemy's adapter (``_execute_async``, SQLAlchemy ≥ 2.1) do not have the shape it needs."""
    needed = (
        hasattr(aiosqlite.Connection, "_execute"),
        hasattr(aiosqlite.Connection, "_conn"),
        hasattr(AsyncAdapt_aiosqlite_cursor, "_execute_async"),
        hasattr(AsyncAdapt_aiosqlite_cursor, "_executemany_async"),
    )
    return OneHopDbapi(aiosqlite, sqlite3) if all(needed) else None
