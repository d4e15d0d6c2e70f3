"""Feedback reports (no auth to send; admins read them)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.ids import new_id
from computalot.store.models import Feedback
from computalot.timeutil import iso, utcnow


async def add_feedback(
    db: AsyncSession, *, type: str, title: str, description: str, account_id: str | None
) -> Feedback:
    row = Feedback(
        id=new_id("fb"),
        type=type,
        title=title,
        description=description,
        account_id=account_id,
        created_at=utcnow(),
    )
    db.add(row)
    await db.flush()
    return row


async def list_feedback(db: AsyncSession, limit: int = 100) -> list[Feedback]:
    query = select(Feedback).order_by(Feedback.created_at.desc()).limit(limit)
    return list((await db.execute(query)).scalars())


def feedback_out(row: Feedback) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": row.type,
        "title": row.title,
        "description": row.description,
        "account_id": row.account_id,
        "created_at": iso(row.created_at),
    }
