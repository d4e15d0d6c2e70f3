"""The content-addressed result cache (docs/llms-full.md, "Result cache").

A job submitted with ``"cache": true`` (or ``{"max_age_s": N}``) has each task's *key* computed
when its row is written: the sha256 of the canonical JSON of what decides the task's outcome --
the revision's content hash and manifest, the runner command, the resource minimums, the
payload the runner sees (``jobs.fanout.task_payload``, batch shape included); for a recipe job,
the recipe, operation and input artifact ids instead of a revision. A task whose key matches a
completed task of the same account (the *source*) is written ``completed`` at once with the
source's result, output and artifacts, ``cached_from`` naming it, ``attempt`` 0 and nothing
billed: no process runs. The other tasks are written ``queued`` with their key, and run.

The cache has no table of its own: the entry for a key is the newest *completed* task that ran
with it (``tasks.cache_key``, set only on tasks that run; index ``ix_tasks_cache``). So

* a failed or cancelled task is never an entry, and a job's tasks are entries as they complete;
* ``"cache": "refresh"`` runs every task with its key: once completed, each is the newest entry
  and replaces the old one for later jobs;
* ``max_age_s`` only takes sources that finished at most that long ago;
* an entry whose artifacts were deleted (any of them) is not used: the lookup checks they are
  still there, so deleting a source artifact invalidates it without any bookkeeping;
* deleting the source's job deletes its tasks, and with them the entry;
* jobs without ``cache`` write no key: their submit, dispatch and recording are unchanged.

Lookups are one query per chunk of keys (``IN``), so a 10,000-task job that is all hits is
written, finalised and ``end``-ed in its submit's transaction (or its planner's) well under a
second (bench/dispatch.py, part f).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Float, Integer, String, bindparam, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.engine.counters import finish_if_done
from computalot.engine.rows import JOBS, TASKS, chunked
from computalot.jobs.fanout import TaskPlan, task_payload
from computalot.states import TaskStatus
from computalot.store.events import write_events
from computalot.store.models import Artifact, Job
from computalot.timeutil import utcnow

#: Bumped when what goes into a key changes, so old entries are never matched by new keys.
KEY_VERSION = 1
_AVAILABLE = "available"


@dataclass(frozen=True)
class CachePolicy:
    """A job's ``cache`` as stored in its ``spec``: look up (unless ``refresh``), and how old a
    source may be."""

    refresh: bool = False
    max_age_s: int | None = None

    def stored(self) -> dict[str, Any]:
        return {"refresh": self.refresh, "max_age_s": self.max_age_s}


def policy_from_request(value: Any) -> CachePolicy | None:
    """The submit's ``cache`` field (already validated: a bool, ``"refresh"`` or an object with
    ``max_age_s``); None when the job does not use the cache."""
    if value is None or value is False:
        return None
    if value is True:
        return CachePolicy()
    if value == "refresh":
        return CachePolicy(refresh=True)
    return CachePolicy(max_age_s=int(value.max_age_s))


def policy_of(spec: Any) -> CachePolicy | None:
    """The policy a job's ``spec`` holds, or None."""
    stored = spec.get("cache") if isinstance(spec, dict) else None
    if not isinstance(stored, dict):
        return None
    age = stored.get("max_age_s")
    return CachePolicy(bool(stored.get("refresh")), int(age) if age is not None else None)


def canonical(value: Any) -> bytes:
    """One JSON text per value: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True
    ).encode()


@dataclass(frozen=True)
class _PayloadJob:
    spec: dict[str, Any]
    payload: dict[str, Any]


@dataclass(frozen=True)
class _PayloadTask:
    batched: bool
    item: Any


@dataclass
class CacheContext:
    """Keys of one job's tasks: the job-wide part is hashed once, each task adds its payload."""

    account_id: str
    policy: CachePolicy
    job: _PayloadJob
    prefix: Any = field(repr=False)  # a hashlib sha256 object

    def key(self, task: TaskPlan) -> str:
        digest = self.prefix.copy()
        payload = task_payload(self.job, _PayloadTask(task.batched, task.items))
        digest.update(canonical({"batched": task.batched, "payload": payload}))
        return str(digest.hexdigest())


def context_for(
    account_id: str,
    spec: dict[str, Any],
    payload: dict[str, Any],
    revision: tuple[str, dict[str, Any]] | None,
    *,
    blocked: bool = False,
) -> CacheContext | None:
    """The key context of a job (``spec`` and ``payload`` as stored on its row; ``revision`` its
    content hash and manifest, None for a recipe job); None unless the job uses the cache.

    A job that waits on ``depends_on`` (``blocked``) looks nothing up: it must not end before
    its dependencies do (nor complete when one fails). Its tasks run with their keys, so they
    still become entries."""
    policy = policy_of(spec)
    if policy is None:
        return None
    if blocked:
        policy = CachePolicy(refresh=True, max_age_s=policy.max_age_s)
    common: dict[str, Any] = {
        "v": KEY_VERSION,
        "command": spec.get("runner_command"),
        "minimums": spec.get("minimums"),
    }
    if revision is not None:
        common["revision"] = revision[0]
        common["manifest"] = revision[1]
    else:
        common["recipe"] = {k: spec.get(k) for k in ("recipe", "operation", "inputs")}
    prefix = hashlib.sha256(canonical(common))
    return CacheContext(account_id, policy, _PayloadJob(spec, payload), prefix)


@dataclass(frozen=True)
class Source:
    """A completed task that answers a key."""

    id: str
    result_bytes: int
    artifacts: list[str]


_SOURCE_COLUMNS = (TASKS.c.cache_key, TASKS.c.id, TASKS.c.result_bytes, TASKS.c.artifacts)


async def find_sources(
    db: AsyncSession, account_id: str, keys: set[str], max_age_s: int | None
) -> dict[str, Source]:
    """The newest completed task of ``account_id`` for each of ``keys`` (at most ``max_age_s``
    old), whose artifacts all still exist: one query per chunk of keys, one more per chunk of
    artifact ids. Oldest first, so the newest entry of a key is the one kept."""
    conn = await db.connection()
    where = [TASKS.c.account_id == account_id]
    if conn.dialect.name == "sqlite":
        # SQLite's planner (no statistics) prefers ix_tasks_status, or, given ``cache_key IS
        # NOT NULL``, a range over every entry of the account: the status test is made
        # unindexable so it looks the keys up in ix_tasks_cache (``IN`` proves the partial
        # index's predicate).
        where.append(TASKS.c.status.concat("") == TaskStatus.COMPLETED.value)
    else:
        where += [TASKS.c.status == TaskStatus.COMPLETED, TASKS.c.cache_key.is_not(None)]
    if max_age_s is not None:
        where.append(TASKS.c.finished_at >= utcnow() - timedelta(seconds=max_age_s))
    found: dict[str, Source] = {}
    for chunk in chunked(sorted(keys)):
        query = (
            select(*_SOURCE_COLUMNS)
            .where(*where, TASKS.c.cache_key.in_(chunk))
            .order_by(TASKS.c.finished_at, TASKS.c.id)
        )
        for key, task_id, size, artifacts in (await conn.execute(query)).tuples():
            arts = [str(a) for a in artifacts] if isinstance(artifacts, list) else []
            found[key] = Source(task_id, int(size or 0), arts)
    return await _with_artifacts(db, found)


async def _with_artifacts(db: AsyncSession, found: dict[str, Source]) -> dict[str, Source]:
    """Drop the sources an artifact of which was deleted (or is not available)."""
    wanted = {a for source in found.values() for a in source.artifacts}
    if not wanted:
        return found
    present: set[str] = set()
    for chunk in chunked(sorted(wanted)):
        query = select(Artifact.id).where(Artifact.id.in_(chunk), Artifact.state == _AVAILABLE)
        present.update((await db.execute(query)).scalars())
    return {k: s for k, s in found.items() if all(a in present for a in s.artifacts)}


_SRC = TASKS.alias("src")
#: A cached task started and finished when its job was submitted (no timestamp is bound per
#: row: binding 2 datetimes for each of 10,000 rows cost more than the rest of the row).
_SUBMITTED = (
    select(JOBS.c.created_at)
    .where(JOBS.c.id == bindparam("h_job", type_=String()))
    .scalar_subquery()
)
_COPIED = (
    "exit_code",
    "stdout",
    "stderr",
    "output_tail",
    "output_attempt",
    "result",
    "result_bytes",
    "result_quality",
    "result_warnings",
    "artifacts",
)
#: A cached task's row: its own identity and element, the source's outcome copied inside the
#: database (a big result is never read into Python), nothing billed.
INSERT_HIT = insert(TASKS).from_select(
    [
        "id",
        "job_id",
        "account_id",
        "index",
        "status",
        "attempt",
        "lost_attempts",
        "element_start",
        "element_count",
        "batched",
        "item",
        "started_at",
        "finished_at",
        "duration_s",
        "billed_s",
        "cached_from",
        *_COPIED,
    ],
    select(
        bindparam("h_id", type_=String()),
        bindparam("h_job", type_=String()),
        bindparam("h_account", type_=String()),
        bindparam("h_index", type_=Integer()),
        literal(TaskStatus.COMPLETED.value, String()),
        literal(0, Integer()),
        literal(0, Integer()),
        bindparam("h_start", type_=Integer()),
        bindparam("h_count", type_=Integer()),
        bindparam("h_batched", type_=TASKS.c.batched.type),
        bindparam("h_item", type_=TASKS.c.item.type),
        _SUBMITTED,
        _SUBMITTED,
        literal(0.0, Float()),
        literal(0.0, Float()),
        _SRC.c.id,
        *(_SRC.c[name] for name in _COPIED),
    ).where(_SRC.c.id == bindparam("h_src", type_=String())),
)


@dataclass
class Written:
    """What writing a chunk of a job's tasks did: rows queued, rows answered from the cache
    and their result bytes.

    A cached task is written ``completed``: its status never changes, so it has no ``task``
    event of its own (as a task written ``queued`` has none); the job's ``job`` and ``end``
    snapshots count it. 10,000 of them would otherwise be 10,000 event rows and as many
    stream events for a job that ran nothing."""

    queued: int = 0
    hits: int = 0
    result_bytes: int = 0


async def write_tasks(
    db: AsyncSession,
    job_id: str,
    rows: list[dict[str, Any]],
    tasks: Sequence[TaskPlan],
    context: CacheContext,
) -> Written:
    """Insert ``rows`` (``jobs.planning.task_rows`` of ``tasks``, all queued): those with a
    cache entry as completed copies of it, the others queued with their key."""
    keys = [context.key(task) for task in tasks]
    policy = context.policy
    sources = (
        {}
        if policy.refresh
        else await find_sources(db, context.account_id, set(keys), policy.max_age_s)
    )
    queued: list[dict[str, Any]] = []
    hits: list[dict[str, Any]] = []
    written = Written()
    for row, key in zip(rows, keys, strict=True):
        source = sources.get(key)
        if source is None:
            row["cache_key"] = key
            queued.append(row)
            continue
        hits.append(_hit_params(row, source.id))
        written.result_bytes += source.result_bytes
    conn = await db.connection()
    if queued:
        await conn.execute(insert(TASKS), queued)
    if hits:
        await conn.execute(INSERT_HIT, hits)
    written.queued, written.hits = len(queued), len(hits)
    return written


def _hit_params(row: dict[str, Any], source_id: str) -> dict[str, Any]:
    return {
        "h_id": row["id"],
        "h_job": row["job_id"],
        "h_account": row["account_id"],
        "h_index": row["index"],
        "h_start": row["element_start"],
        "h_count": row["element_count"],
        "h_batched": row["batched"],
        "h_item": row["item"],
        "h_src": source_id,
    }


async def settle_hits(db: AsyncSession, job: Job, written: Written) -> bool:
    """After the inline rows of ``job`` (in the submit's transaction): its counters count the
    cached tasks as completed, and a job whose every task was answered ends here, with its
    ``job`` and ``end`` events. True when it ended."""
    if written.hits:
        job.n_queued -= written.hits
        job.n_completed += written.hits
        job.result_bytes = (job.result_bytes or 0) + written.result_bytes
        await db.flush()
    ended = await finish_if_done(db, {job.id}) if job.n_queued == 0 else []
    await write_events(db, ended)
    return bool(ended)


async def end_if_answered(db: AsyncSession, job_id: str) -> bool:
    """After a planned job's last chunk: it ends here if every task was answered."""
    ended = await finish_if_done(db, {job_id})
    await write_events(db, ended)
    return bool(ended)
