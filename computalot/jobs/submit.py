"""Turn a validated ``POST /jobs`` body into one job row and its task rows, in one transaction.

Planning happens here (fan-out, batching, resources, dependencies); the dispatcher only ever
sees runnable rows. ``Idempotency-Key`` makes a retried submit return the first job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.errors import Conflict, NotFound, field_error
from computalot.ids import new_id
from computalot.jobs.fanout import plan_fanout
from computalot.jobs.merge import validate_merge_options
from computalot.jobs.quotas import Quotas, check_quotas, lock_account
from computalot.jobs.resources import check_satisfiable, ray_options, resolve_requirements
from computalot.projects.service import get_project_with_revision
from computalot.sandbox.limits import ceiling_errors
from computalot.sandbox.status import UNCONFINED
from computalot.schemas.jobs import JobSubmit
from computalot.settings import Settings
from computalot.store.models import IdempotencyKey, Job, Task
from computalot.timeutil import utcnow

IDEMPOTENCY_TTL = timedelta(hours=24)
INSERT_CHUNK = 5000


@dataclass
class Submitted:
    job: Job
    created: bool


async def find_idempotent(db: AsyncSession, account_id: str, key: str) -> Job | None:
    row = await db.get(IdempotencyKey, (account_id, key))
    if row is None:
        return None
    if row.created_at < utcnow() - IDEMPOTENCY_TTL:
        await db.delete(row)
        await db.flush()
        return None
    return await db.get(Job, row.job_id)


async def _check_dependencies(db: AsyncSession, account_id: str, ids: list[str]) -> bool:
    """Validate ``depends_on``; return True when the job must wait for some of them."""
    if not ids:
        return False
    rows = await db.execute(
        select(Job.id, Job.status).where(Job.account_id == account_id, Job.id.in_(ids))
    )
    found = dict(rows.tuples().all())
    for i, dep in enumerate(ids):
        if dep not in found:
            raise field_error(["depends_on", i], f"job {dep} not found")
    return any(status != "completed" for status in found.values())


async def submit_job(
    db: AsyncSession,
    account_id: str,
    body: JobSubmit,
    *,
    idempotency_key: str | None,
    cluster_nodes: list[dict[str, float]],
    max_elements: int,
    quotas: Quotas,
    settings: Settings | None = None,
) -> Submitted:
    if idempotency_key:
        if len(idempotency_key) > 255:
            raise field_error(["Idempotency-Key"], "must be at most 255 characters")
        previous = await find_idempotent(db, account_id, idempotency_key)
        if previous is not None:
            return Submitted(previous, created=False)

    job_type = body.type or "structured_runner"
    if body.recipe is not None:
        raise NotFound(
            f"recipe {body.recipe!r} is not available on this deployment yet",
            recommended_action="use a project job (project + runner_command) for now",
        )
    if job_type != "structured_runner":
        raise field_error(
            ["type"], f"job type {job_type!r} is not available yet; use structured_runner"
        )
    if not body.project:
        raise field_error(["project"], "required for project jobs")

    project, revision = await get_project_with_revision(db, account_id, body.project)
    if revision is None:
        raise Conflict(
            f"project {project.name!r} has no pushed code yet",
            recommended_action=f"push a tarball first: POST /api/v1/projects/{project.name}/push",
        )
    runner_command = body.runner_command or (revision.manifest.get("entrypoint") or {}).get(
        "command"
    )
    if not runner_command:
        raise field_error(
            ["runner_command"], "required (the project manifest has no entrypoint.command)"
        )
    merge_strategy = validate_merge_options(body.merge_strategy, body.merge_key, body.weight_field)
    if body.batch_size is not None and body.fan_out is None:
        raise field_error(["batch_size"], "batch_size needs a fan_out (by or items)")
    plan = plan_fanout(body.payload, body.fan_out, body.batch_size)
    if plan.element_count > max_elements:
        raise field_error(["fan_out"], f"at most {max_elements} elements per job")
    minimums = resolve_requirements(body.requirements)
    if settings is not None:
        for name, message in ceiling_errors(settings, minimums):
            raise field_error(["requirements", name], message)
    options = ray_options(minimums)
    check_satisfiable(options, cluster_nodes)
    blocked = await _check_dependencies(db, account_id, body.depends_on)

    base_payload = body.payload
    if plan.kind == "by":
        # The list lives on in the tasks' element deltas; keeping it in the job row too would
        # make every dispatcher read of the job parse up to 100,000 elements again.
        base_payload = {**body.payload, plan.spec["by"]: None}
    now = utcnow()
    job_id = new_id("job")
    warnings = list(revision.warnings)
    if settings is not None and settings.sandbox == "none":
        warnings.append(UNCONFINED)
    job = Job(
        id=job_id,
        account_id=account_id,
        type=job_type,
        recipe=None,
        project_id=project.id,
        project_name=project.name,
        revision_id=revision.id,
        status="queued",
        priority=body.priority,
        tags=body.tags,
        depends_on=body.depends_on,
        blocked=blocked,
        payload=base_payload,
        spec={
            "kind": plan.kind,
            "fan_out": plan.spec,
            "batch_size": plan.batch_size,
            "element_count": plan.element_count,
            "merge_strategy": merge_strategy,
            "merge_key": body.merge_key,
            "weight_field": body.weight_field,
            "runner_command": list(runner_command),
            "checkpointing": body.checkpointing.model_dump() if body.checkpointing else None,
            "minimums": minimums,
        },
        timeout_s=body.timeout_s,
        max_retries=body.max_retries,
        requirements=body.requirements.model_dump(exclude_none=True) if body.requirements else None,
        resources=options,
        n_total=len(plan.tasks),
        n_queued=len(plan.tasks),
        warnings=warnings,
        meta=body.meta,
        variant=body.variant,
        callback_url=body.callback_url,
        created_at=now,
    )
    await lock_account(db, account_id)
    db.add(job)
    if idempotency_key:
        db.add(
            IdempotencyKey(
                account_id=account_id, key=idempotency_key, job_id=job_id, created_at=now
            )
        )
    try:
        await db.flush()
    except IntegrityError:
        await db.rollback()
        previous = await find_idempotent(db, account_id, idempotency_key or "")
        if previous is None:
            raise
        return Submitted(previous, created=False)
    await check_quotas(db, account_id, quotas, len(plan.tasks))
    rows = [
        {
            "id": new_id("tsk"),
            "job_id": job_id,
            "account_id": account_id,
            "index": t.index,
            "status": "queued",
            "attempt": 0,
            "lost_attempts": 0,
            "element_start": t.element_start,
            "element_count": t.element_count,
            "batched": t.batched,
            "item": t.items,
        }
        for t in plan.tasks
    ]
    for start in range(0, len(rows), INSERT_CHUNK):
        await db.execute(insert(Task), rows[start : start + INSERT_CHUNK])
    return Submitted(job, created=True)
