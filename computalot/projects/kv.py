"""A project's key-value store (docs/llms-full.md, "Project KV").

Values are JSON of at most :data:`MAX_VALUE_BYTES`; every write bumps the key's ``version``
(1 on creation). ``If-Match`` makes a write or delete a compare-and-set that the store decides
in one statement, so two writers racing on one key can never both win, on SQLite and
PostgreSQL alike:

- a number ``n`` > 0: ``UPDATE … WHERE version = n`` (or ``DELETE … WHERE version = n``);
- ``0``: the key must not exist yet: ``INSERT … ON CONFLICT DO NOTHING`` (the primary key
  decides a race between two creators);
- ``*``: the key must exist, any version;
- no header: an unconditional upsert (``INSERT … ON CONFLICT DO UPDATE``).

A refused compare-and-set writes nothing and answers 409 ``conflict`` naming the current version.
Each write and delete stores a ``kv`` project event (key and version, never the value) in the
same transaction (``projects.events``), which the caller commits.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.artifacts.service import insert_for
from computalot.cursors import bad_cursor, encode_cursor
from computalot.errors import Conflict, NotFound, field_error
from computalot.projects.events import write_project_event
from computalot.store.models import Project, ProjectKV
from computalot.timeutil import iso, utcnow

MAX_KEY_CHARS = 512
MAX_VALUE_BYTES = 1024 * 1024
MAX_PAGE = 1000
#: ``If-Match: *``: the key must exist (any version).
ANY_VERSION = -1
_MAX_CURSOR_CHARS = 4 * MAX_KEY_CHARS


@dataclass(frozen=True)
class Entry:
    """One key as the API shows it."""

    key: str
    value: Any
    version: int
    size: int
    updated_at: Any

    def out(self, with_value: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {"key": self.key}
        if with_value:
            body["value"] = self.value
        body.update(
            {"version": self.version, "size": self.size, "updated_at": iso(self.updated_at)}
        )
        return body


def check_key(key: str) -> str:
    """1-512 printable characters (``/`` allowed, no control characters), else 422."""
    if not key or len(key) > MAX_KEY_CHARS:
        raise field_error(["path", "key"], f"a key has 1 to {MAX_KEY_CHARS} characters")
    if not key.isprintable():
        raise field_error(["path", "key"], "a key may not contain control characters")
    return key


def parse_if_match(header: str | None) -> int | None:
    """The ``If-Match`` header as an expected version: None (no condition), ``0`` (must not
    exist), ``ANY_VERSION`` (``*``: must exist) or a version; anything else is 422."""
    if header is None:
        return None
    text = header.strip()
    if text == "*":
        return ANY_VERSION
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not text.isdigit() or len(text) > 18:
        raise field_error(["header", "If-Match"], "a version number (0 = must not exist yet) or *")
    return int(text)


def encoded_size(value: Any) -> int:
    """Bytes of the value's compact UTF-8 JSON (what the 1 MiB limit counts)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


async def _current_version(db: AsyncSession, project_id: str, key: str) -> int | None:
    query = select(ProjectKV.version).where(
        ProjectKV.project_id == project_id, ProjectKV.key == key
    )
    found = (await db.execute(query)).scalar_one_or_none()
    return int(found) if found is not None else None


async def _conflict(db: AsyncSession, project_id: str, key: str, expected: int) -> Conflict:
    current = await _current_version(db, project_id, key)
    wanted = "to exist" if expected == ANY_VERSION else f"at version {expected}"
    if expected == 0:
        wanted = "not to exist"
    now = "does not exist" if current is None else f"is at version {current}"
    return Conflict(
        f"key {key!r} {now}; If-Match expected it {wanted}",
        details=[
            {
                "loc": ["header", "If-Match"],
                "msg": f"current version: {current if current is not None else 'none'}",
                "current_version": current,
            }
        ],
        recommended_action="read the key again (GET), then retry the write with its version",
    )


_RETURNING = (ProjectKV.version, ProjectKV.size_bytes, ProjectKV.updated_at)


async def put_value(
    db: AsyncSession,
    project: Project,
    account_id: str,
    key: str,
    value: Any,
    expected: int | None,
) -> Entry:
    """Write ``value`` under ``key`` (see the module for ``expected``); 409 when refused."""
    size = encoded_size(value)
    now = utcnow()
    fresh = {
        "project_id": project.id,
        "key": key,
        "account_id": project.account_id,
        "value": value,
        "size_bytes": size,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    where = (ProjectKV.project_id == project.id, ProjectKV.key == key)
    changes = {"value": value, "size_bytes": size, "updated_at": now}
    if expected is None:
        insert = insert_for(db)(ProjectKV).values(fresh)
        statement: Any = insert.on_conflict_do_update(
            index_elements=[ProjectKV.project_id, ProjectKV.key],
            set_={**changes, "version": ProjectKV.version + 1},
        ).returning(*_RETURNING)
    elif expected == 0:
        statement = (
            insert_for(db)(ProjectKV).values(fresh).on_conflict_do_nothing().returning(*_RETURNING)
        )
    else:
        condition = where if expected == ANY_VERSION else (*where, ProjectKV.version == expected)
        statement = (
            update(ProjectKV)
            .where(*condition)
            .values(**changes, version=ProjectKV.version + 1)
            .returning(*_RETURNING)
        )
    row = (await db.execute(statement)).first()
    if row is None:
        raise await _conflict(db, project.id, key, expected if expected is not None else 0)
    version = int(row[0])
    await write_project_event(
        db, project.id, project.account_id, "kv", {"key": key, "version": version}
    )
    return Entry(key, value, version, int(row[1]), row[2])


async def get_value(db: AsyncSession, project: Project, key: str) -> Entry:
    query = select(
        ProjectKV.key,
        ProjectKV.value,
        ProjectKV.version,
        ProjectKV.size_bytes,
        ProjectKV.updated_at,
    ).where(ProjectKV.project_id == project.id, ProjectKV.key == key)
    row = (await db.execute(query)).first()
    if row is None:
        raise _missing(project, key)
    return Entry(row[0], row[1], int(row[2]), int(row[3]), row[4])


def _missing(project: Project, key: str) -> NotFound:
    return NotFound(
        f"key {key!r} not found in project {project.name!r}",
        details=[{"loc": ["path", "key"], "msg": "no such key"}],
        recommended_action="list the keys with GET /api/v1/projects/:name/kv?prefix=",
    )


async def delete_value(
    db: AsyncSession, project: Project, key: str, expected: int | None
) -> dict[str, Any]:
    """Delete ``key`` (``expected`` as for writes; ``0`` can never match an existing key)."""
    condition: tuple[Any, ...] = (ProjectKV.project_id == project.id, ProjectKV.key == key)
    if expected is not None and expected != ANY_VERSION:
        condition = (*condition, ProjectKV.version == expected)
    row = None
    if expected != 0:
        statement = delete(ProjectKV).where(*condition).returning(ProjectKV.version)
        row = (await db.execute(statement)).first()
    if row is None:
        if expected is None:
            raise _missing(project, key)
        raise await _conflict(db, project.id, key, expected)
    version = int(row[0])
    data = {"key": key, "version": version, "deleted": True}
    await write_project_event(db, project.id, project.account_id, "kv", data)
    return data


def _encode_cursor(key: str) -> str:
    """The list's cursor: ``[last key]`` in the one cursor shape (``computalot.cursors``)."""
    return encode_cursor([key])


def _decode_cursor(cursor: str) -> str:
    """The last key of a cursor made by :func:`_encode_cursor`; anything else is 400. (Not
    ``cursors.decode_cursor``: a key may be longer than the ids and times it allows.)"""
    if len(cursor) > _MAX_CURSOR_CHARS:
        raise bad_cursor()
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, RecursionError):
        raise bad_cursor() from None
    if not isinstance(values, list) or len(values) != 1:
        raise bad_cursor()
    key = values[0]
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
        raise bad_cursor()
    return key


async def list_values(
    db: AsyncSession,
    project: Project,
    *,
    prefix: str,
    limit: int,
    cursor: str | None,
    values: bool,
) -> dict[str, Any]:
    """Keys in key order from after ``cursor``, those starting with ``prefix`` only."""
    columns: list[Any] = [
        ProjectKV.key,
        ProjectKV.version,
        ProjectKV.size_bytes,
        ProjectKV.updated_at,
    ]
    if values:
        columns.append(ProjectKV.value)
    query = select(*columns).where(ProjectKV.project_id == project.id)
    if prefix:
        query = query.where(
            ProjectKV.key >= prefix, func.substr(ProjectKV.key, 1, len(prefix)) == prefix
        )
    if cursor:
        query = query.where(ProjectKV.key > _decode_cursor(cursor))
    rows: list[Any] = list((await db.execute(query.order_by(ProjectKV.key).limit(limit + 1))).all())
    more = len(rows) > limit
    entries = [
        Entry(r[0], r[4] if values else None, int(r[1]), int(r[2]), r[3]).out(with_value=values)
        for r in rows[:limit]
    ]
    next_cursor = _encode_cursor(rows[limit - 1][0]) if more else None
    return {"keys": entries, "next_cursor": next_cursor}


__all__ = [
    "ANY_VERSION",
    "MAX_KEY_CHARS",
    "MAX_VALUE_BYTES",
    "Entry",
    "check_key",
    "delete_value",
    "encoded_size",
    "get_value",
    "list_values",
    "parse_if_match",
    "put_value",
]
