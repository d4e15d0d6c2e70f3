"""``store.hot_reads`` answers exactly what the ORM reads answer, on both backends.

The hot routes (``/account``, ``/jobs/:id``, ``/jobs/:id/tasks``, the ``/jobs`` list) read
through Core statements built once and run in one hop (issue #18 §3); each answer here is
compared with the one ``store.jobs`` / ``store.accounts`` and ``computalot.views`` give for the
same rows: same fields, same values, same pages and cursors, same errors.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from computalot import views
from computalot.errors import NotFound, ValidationFailed
from computalot.ids import new_id
from computalot.schemas.accounts import account_out
from computalot.store import hot_reads
from computalot.store import jobs as orm_reads
from computalot.store.accounts import get_account
from computalot.store.db import Store
from computalot.timeutil import utcnow
from tests.support.store_rows import job_row, new_member, task_row


async def seeded(store: Store) -> tuple[str, str, list[str]]:
    """An account with 7 jobs (tags, statuses, a shared created_at for the cursor's tie-break)
    and 5 tasks on the first; another account with one job."""
    owner, other = await new_member(store, "hot"), await new_member(store, "other")
    now = utcnow()
    jobs = [
        job_row(
            owner,
            tags=["a", "b"] if i % 2 else ["a"],
            status=("queued", "running", "completed")[i % 3],
            spec={"kind": "items", "element_count": 5, "runner_command": ["python3", "r.py"]},
            payload={"base": i},
            created_at=now - timedelta(seconds=i // 2),  # pairs share a created_at
            error={"message": "boom"} if i == 3 else None,
            meta={"n": i},
        )
        for i in range(7)
    ]
    async with store.sessions() as db:
        db.add_all(jobs)
        db.add(job_row(other))
        await db.flush()
        db.add_all(
            task_row(jobs[0], i, status=("completed", "failed")[i % 2], output_tail=f"t{i}")
            for i in range(5)
        )
        await db.commit()
    return owner, other, [j.id for j in jobs]


async def test_hot_reads_answer_what_the_orm_reads_answer(store: Store) -> None:
    owner, other, job_ids = await seeded(store)
    engine = store.engine

    async with store.sessions() as db:
        assert account_out(await get_account(db, owner)) == account_out(
            await hot_reads.run(engine, hot_reads.account, owner)  # type: ignore[arg-type]
        )
        assert await hot_reads.run(engine, hot_reads.account, new_id("acct")) is None

        for job_id in job_ids:
            orm = views.job_out(await orm_reads.get_job(db, owner, job_id))
            hot = await hot_reads.run(engine, hot_reads.job, owner, job_id)
            assert views.job_out(hot) == orm  # type: ignore[arg-type]
        for who, job_id in ((other, job_ids[0]), (owner, new_id("job"))):
            with pytest.raises(NotFound, match="not found"):
                await hot_reads.run(engine, hot_reads.job, who, job_id)

        filters: list[dict[str, Any]] = [
            {},
            {"status": "queued,completed"},
            {"tag": "b"},
            {"type": "run"},
            {"project": "nope"},
        ]
        for extra in filters:
            kwargs = {"status": None, "project": None, "tag": None, "type": None, **extra}
            orm_cursor: str | None = None
            hot_cursor: str | None = None
            pages = 0
            while True:
                orm_page, orm_cursor = await orm_reads.list_jobs(
                    db, owner, limit=2, cursor=orm_cursor, **kwargs
                )
                hot_page, hot_cursor = await hot_reads.run(
                    engine, hot_reads.list_jobs, owner, limit=2, cursor=hot_cursor, **kwargs
                )
                assert [views.job_out(j) for j in hot_page] == [  # type: ignore[arg-type]
                    views.job_out(j) for j in orm_page
                ], extra
                assert hot_cursor == orm_cursor
                pages += 1
                if orm_cursor is None:
                    break
            assert pages >= 1
        with pytest.raises(ValidationFailed):
            await hot_reads.run(
                engine,
                hot_reads.list_jobs,
                owner,
                status="nope",
                project=None,
                tag=None,
                type=None,
                limit=2,
                cursor=None,
            )

        first = await orm_reads.get_job(db, owner, job_ids[0])
        for status in (None, "failed", "completed,failed"):
            orm_cursor = hot_cursor = None
            while True:
                orm_tasks, orm_cursor = await orm_reads.list_tasks(
                    db, first, limit=2, cursor=orm_cursor, status=status
                )
                hot_job, hot_tasks, hot_cursor = await hot_reads.run(
                    engine,
                    hot_reads.job_and_tasks,
                    owner,
                    first.id,
                    limit=2,
                    cursor=hot_cursor,
                    status=status,
                )
                assert [views.task_out(hot_job, t) for t in hot_tasks] == [  # type: ignore[arg-type]
                    views.task_out(first, t) for t in orm_tasks
                ]
                assert hot_cursor == orm_cursor
                if orm_cursor is None:
                    break
        with pytest.raises(ValidationFailed):
            await hot_reads.run(
                engine,
                hot_reads.job_and_tasks,
                owner,
                first.id,
                limit=2,
                cursor=None,
                status="nope",
            )
        with pytest.raises(NotFound):
            await hot_reads.run(
                engine, hot_reads.job_and_tasks, other, first.id, limit=2, cursor=None
            )
