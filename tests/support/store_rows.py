"""Rows for store-level tests (both backends): an account, a project, a job, a task."""

from __future__ import annotations

import uuid
from typing import Any

from computalot.ids import new_id
from computalot.store import accounts
from computalot.store.db import Store
from computalot.store.models import Job, Project, Task
from computalot.timeutil import utcnow


async def new_member(store: Store, name: str = "m") -> str:
    async with store.sessions() as db:
        account = await accounts.create_account(db, name=f"{name}-{uuid.uuid4().hex[:6]}")
        await db.commit()
        return account.id


def project_row(account_id: str, **extra: Any) -> Project:
    """A project of ``account_id`` with a unique name and no revision yet."""
    now = utcnow()
    values: dict[str, Any] = {
        "id": new_id("prj"),
        "account_id": account_id,
        "name": f"p-{uuid.uuid4().hex[:8]}",
        "warm_state": {},
        "created_at": now,
        "updated_at": now,
    }
    values.update(extra)
    return Project(**values)


def job_row(account_id: str, **extra: Any) -> Job:
    values: dict[str, Any] = {
        "id": new_id("job"),
        "account_id": account_id,
        "type": "run",
        "status": "queued",
        "priority": "normal",
        "tags": ["t1"],
        "depends_on": [],
        "payload": {"x": 1},
        "spec": {},
        "timeout_s": 60,
        "max_retries": 0,
        "resources": {"cpus": 1},
        "warnings": [],
        "created_at": utcnow(),
    }
    values.update(extra)
    return Job(**values)


def task_row(job: Job, index: int, **extra: Any) -> Task:
    """One task of ``job``: element ``index`` on its own, queued, unless ``extra`` says otherwise."""
    values: dict[str, Any] = {
        "id": new_id("tsk"),
        "job_id": job.id,
        "account_id": job.account_id,
        "index": index,
        "status": "queued",
        "element_start": index,
        "element_count": 1,
        "batched": False,
        "item": [{"i": index}],
    }
    values.update(extra)
    return Task(**values)


async def items_job(
    store: Store, n: int, *, owner: str = "job", spec: dict[str, Any] | None = None, **fields: Any
) -> Job:
    """A stored ``items`` job of ``n`` single-element queued tasks, in a new account."""
    account_id = await new_member(store, owner)
    job = job_row(
        account_id,
        type="structured_runner",
        spec={"kind": "items", "runner_command": ["true"], **(spec or {})},
        payload={},
        n_total=n,
        n_queued=n,
        **fields,
    )
    async with store.sessions() as db:
        db.add(job)
        await db.flush()
        for i in range(n):
            db.add(task_row(job, i))
        await db.commit()
    return job
