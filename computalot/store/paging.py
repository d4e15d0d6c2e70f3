"""Newest-first keyset pages: every ``created_at``/``id`` listing (jobs, artifacts, holds,
ledger, quotes) pages the same way (docs/llms-full.md, "Conventions").

The cursor is the last row's ``(created_at, id)`` (``computalot.cursors``); the next page is
the rows strictly before it in ``created_at DESC, id DESC`` order, so rows written meanwhile
never shift a page.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.cursors import decode_time_and_id, encode_cursor


async def newest_first(
    db: AsyncSession, model: Any, query: Any, *, limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """One page of ``query`` (a select of ``model``, already filtered) and the next cursor
    (None on the last page)."""
    if cursor:
        at, last_id = decode_time_and_id(cursor)
        query = query.where(
            or_(model.created_at < at, and_(model.created_at == at, model.id < last_id))
        )
    query = query.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)
    rows = list((await db.execute(query)).scalars())
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor([rows[-1].created_at.isoformat(), rows[-1].id])
