"""Writing a big result into ``tasks.result`` off the event loop, without a copy in Python.

Storing a big text with one ``UPDATE`` from Python costs three copies in the writing process
(the ``str``, SQLite's copy of the bound parameter, which its statement cache then keeps until
the next write, and the row record it builds) and runs on the caller's thread, which for the
dispatcher is its event loop. Here the column is first set to a ``zeroblob`` of the right size
and the bytes are then copied into it a megabyte at a time through SQLite's incremental blob
I/O, straight from the buffer Ray handed over (a view of its object store's shared memory).
SQLite still builds the zero-filled record once (``result`` is not the table's last column):
two transient copies, none left behind (bench/README.md, "Why the API and store do what they
do"). All of it runs on the connection's own thread, so the event loop goes on serving
meanwhile, and in the caller's transaction, so the row commits (or rolls back) with everything
else.

The value is stored as a BLOB of UTF-8 JSON text; every reader takes it as text
(``CAST(result AS TEXT)``, or the JSON column's decoder, which reads bytes too).
PostgreSQL has no such interface: :func:`blob_writer` answers None there and the caller stores
the text with a plain ``UPDATE``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

#: Bytes copied into the blob per call.
CHUNK_BYTES = 1024 * 1024

BlobWriter = Callable[[list[tuple[str, Any]]], Awaitable[None]]


def _write_blobs(conn: sqlite3.Connection, items: list[tuple[str, Any]]) -> None:
    """On the connection's thread, in its open transaction: each task's result becomes the
    bytes of its buffer."""
    if not conn.in_transaction:
        raise RuntimeError("a big result must be written inside the recording transaction")
    for task_id, data in items:
        view = memoryview(data).cast("B")
        cursor = conn.execute(
            "UPDATE tasks SET result = zeroblob(?) WHERE id = ? RETURNING rowid",
            (view.nbytes, task_id),
        )
        row = cursor.fetchone()
        cursor.close()
        if row is None:
            continue
        with conn.blobopen("tasks", "result", row[0]) as blob:
            for start in range(0, view.nbytes, CHUNK_BYTES):
                blob.write(view[start : start + CHUNK_BYTES])


async def blob_writer(db: AsyncSession) -> BlobWriter | None:
    """A function that stores ``[(task id, UTF-8 bytes)]`` as those tasks' results in ``db``'s
    transaction, or None where this store cannot (PostgreSQL, or an aiosqlite without the
    connection-thread call the store's SQLite driver also relies on)."""
    conn = await db.connection()
    if conn.dialect.name != "sqlite":
        return None
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection  # the aiosqlite connection
    if not (hasattr(driver, "_execute") and hasattr(driver, "_conn")):
        return None

    async def write(items: list[tuple[str, Any]]) -> None:
        await driver._execute(_write_blobs, driver._conn, items)

    return write
