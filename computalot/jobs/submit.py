"""Turn a ``POST /jobs`` body into a job: validate, build the job row, write it (and its tasks).

Everything that can refuse a submit happens before it answers: the fan-out shape and element
count, requirements, dependencies, the idempotency key and the account's quotas (422/429). What
is left cannot fail for the request's sake: writing the task rows. A small job gets them in the
submit's transaction and answers ``queued``; a big one answers ``planning`` at once and its rows
are written off the request (``computalot.jobs.planning``). ``Idempotency-Key`` makes a retried
submit return the first job (docs/llms-full.md, "Idempotency keys").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.artifacts.inputs import check_submit_inputs
from computalot.billing.holds import hold_job, job_price, worst_case_usd
from computalot.callbacks.urls import callback_policy, check_callback_url
from computalot.engine.warm_python.command import job_warning
from computalot.errors import Conflict, field_error
from computalot.ids import new_id
from computalot.jobs.fanout import FanoutPlan, plan_fanout, task_count
from computalot.jobs.merge import validate_merge_options
from computalot.jobs.planning import (
    INLINE_TASKS,
    LEASE_S,
    Planning,
    plan_input,
    replan,
    write_inline,
)
from computalot.jobs.quotas import Quotas, check_quotas, lock_account
from computalot.jobs.recipe_submit import check_recipe_submit, with_capability
from computalot.jobs.resources import check_satisfiable, ray_options, resolve_requirements
from computalot.jobs.result_cache import CacheContext, context_for, policy_from_request
from computalot.jobs.workflows import Workflow, check_workflow
from computalot.projects.service import get_project_with_revision
from computalot.sandbox.limits import ceiling_errors
from computalot.sandbox.status import UNCONFINED
from computalot.schemas.jobs import JobSubmit
from computalot.settings import Settings
from computalot.states import JobStatus
from computalot.store.models import IdempotencyKey, Job, Project, Revision
from computalot.timeutil import utcnow

IDEMPOTENCY_TTL = timedelta(hours=24)
MAX_KEY_CHARS = 255


@dataclass
class Submitted:
    """The submit's answer. ``planning`` (a new job answered in ``planning``) holds the rows
    still to write: the caller hands it to its planner once the transaction is committed."""

    job: Job
    created: bool
    planning: Planning | None = None
    #: Every task was answered from the result cache: the job has ended already.
    ended: bool = False


@dataclass(frozen=True)
class Checked:
    """What validating a submit found: everything the job row and its tasks are built from."""

    project: Project | None  # None for a recipe job
    revision: Revision | None
    runner_command: list[str]
    merge_strategy: str
    plan: FanoutPlan
    minimums: dict[str, Any]
    options: dict[str, Any]
    blocked: bool
    #: A recipe job's ``{"recipe", "operation", "inputs"}`` (``jobs.recipe_submit``).
    recipe: dict[str, Any] | None = None
    #: A sweep, map_reduce or benchmark job's translation into a fan-out (``jobs.workflows``).
    workflow: Workflow | None = None


@dataclass(frozen=True)
class Limits:
    """What the deployment allows a submit: the cluster's nodes (Ray names, totals), elements
    per job, quotas, and how many tasks are written in the request."""

    cluster_nodes: list[dict[str, float]]
    max_elements: int
    quotas: Quotas
    inline_tasks: int = INLINE_TASKS
    #: The planner that will write a big job's rows (``jobs.planning.Planner.id``); without
    #: one the job's lease starts expired and the next planning sweep takes it.
    planner_id: str | None = None


async def find_idempotent(db: AsyncSession, account_id: str, key: str) -> Job | None:
    row = await db.get(IdempotencyKey, (account_id, key))
    if row is None:
        return None
    if row.created_at < utcnow() - IDEMPOTENCY_TTL:
        await db.delete(row)
        await db.flush()
        return None
    return await db.get(Job, row.job_id)


async def submit_job(
    db: AsyncSession,
    account_id: str,
    body: JobSubmit,
    *,
    idempotency_key: str | None,
    limits: Limits,
    settings: Settings | None = None,
) -> Submitted:
    """Validate, then write the job (the caller commits, then starts ``planning`` if any)."""
    if idempotency_key:
        if len(idempotency_key) > MAX_KEY_CHARS:
            raise field_error(["Idempotency-Key"], f"must be at most {MAX_KEY_CHARS} characters")
        previous = await find_idempotent(db, account_id, idempotency_key)
        if previous is not None:
            return Submitted(previous, created=False)
    checked = await validate_submit(db, account_id, body, limits, settings)
    n_tasks = task_count(checked.plan)
    planning = n_tasks > limits.inline_tasks
    job = build_job(account_id, body, checked, settings, planning=planning)
    usd_per_hour = job_price(checked.minimums, settings)
    job.held_usd = worst_case_usd(n_tasks, job.timeout_s, usd_per_hour)
    if planning:
        job.planner_id = limits.planner_id or "unowned"
        lease = timedelta(seconds=LEASE_S if limits.planner_id else 0)
        job.planner_lease_until = job.created_at + lease
    await lock_account(db, account_id)
    previous = await insert_job(db, job, idempotency_key)
    if previous is not None:
        return Submitted(previous, created=False)
    await check_quotas(db, account_id, limits.quotas, n_tasks)
    await hold_job(db, job, usd_per_hour, settings)  # 402 here rolls everything back
    if planning:
        return Submitted(job, True, Planning(job.id, account_id, job.plan_input, 0, job.blocked))
    cache = _cache_context(job, checked)
    ended = await write_inline(db, job, replan(_plan_input(body, checked)), cache)
    return Submitted(job, created=True, ended=ended)


def _cache_context(job: Job, checked: Checked) -> CacheContext | None:
    """The result-cache key context of a job with ``cache`` (``jobs.result_cache``)."""
    revision = checked.revision
    identity = (revision.content_hash, revision.manifest) if revision is not None else None
    return context_for(job.account_id, job.spec, job.payload, identity, blocked=job.blocked)


def _plan_input(body: JobSubmit, checked: Checked) -> dict[str, Any]:
    """What planning builds the job's tasks from (a workflow's own, else the fan-out's)."""
    if checked.workflow is not None:
        return checked.workflow.stored
    return plan_input(body.payload, body.fan_out, body.batch_size)


async def validate_submit(
    db: AsyncSession,
    account_id: str,
    body: JobSubmit,
    limits: Limits,
    settings: Settings | None,
) -> Checked:
    """Every check that can refuse the submit (422, 404, 409), and the plan it validated."""
    check_callback_url(body.callback_url, callback_policy(settings))
    if body.recipe is not None:
        return await _validate_recipe(db, account_id, body, limits, settings)
    # A grid is counted here, before any lookup: a 1000 x 1000 sweep is refused unbuilt.
    workflow = check_workflow(body, limits.max_elements)
    project, revision, runner_command = await _project_command(db, account_id, body)
    if workflow is not None:
        merge_strategy, plan = workflow.type, workflow.plan
    else:
        merge_strategy = validate_merge_options(
            body.merge_strategy, body.merge_key, body.weight_field
        )
        if body.batch_size is not None and body.fan_out is None:
            raise field_error(["batch_size"], "batch_size needs a fan_out (by or items)")
        plan = plan_fanout(body.payload, body.fan_out, body.batch_size, tasks=False)
        if plan.element_count > limits.max_elements:
            raise field_error(["fan_out"], f"at most {limits.max_elements} elements per job")
    minimums, options = _resources(body, limits, settings)
    payload = workflow.payload if workflow is not None else body.payload
    fan_out = workflow.stored["fan_out"] if workflow is not None else body.fan_out
    await check_submit_inputs(db, account_id, payload, fan_out, plan.kind, revision.manifest)
    blocked = await _check_dependencies(db, account_id, body.depends_on)
    return Checked(
        project,
        revision,
        runner_command,
        merge_strategy,
        plan,
        minimums,
        options,
        blocked,
        workflow=workflow,
    )


def _resources(
    body: JobSubmit, limits: Limits, settings: Settings | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The job's minimums and Ray options, checked against the ceilings and the cluster."""
    minimums = resolve_requirements(body.requirements)
    if settings is not None:
        for name, message in ceiling_errors(settings, minimums):
            raise field_error(["requirements", name], message)
    options = ray_options(minimums)
    check_satisfiable(options, limits.cluster_nodes)
    return minimums, options


async def _validate_recipe(
    db: AsyncSession, account_id: str, body: JobSubmit, limits: Limits, settings: Settings | None
) -> Checked:
    """A recipe job: one task running the recipe's operation (``jobs.recipe_submit``)."""
    recipe = await check_recipe_submit(db, account_id, body, limits.cluster_nodes)
    plan = plan_fanout(body.payload, None, None, tasks=False)
    minimums, options = _resources(body, limits, settings)
    options = with_capability(options, recipe["capability"])
    blocked = await _check_dependencies(db, account_id, body.depends_on)
    return Checked(None, None, [], "collect", plan, minimums, options, blocked, recipe)


async def _project_command(
    db: AsyncSession, account_id: str, body: JobSubmit
) -> tuple[Project, Revision, list[str]]:
    """The job's project, its active revision and the command to run."""
    if not body.project:
        raise field_error(["project"], "required for project jobs")
    project, revision = await get_project_with_revision(db, account_id, body.project)
    if revision is None:
        raise Conflict(
            f"project {project.name!r} has no pushed code yet",
            recommended_action=f"push a tarball first: POST /api/v1/projects/{project.name}/push",
        )
    entrypoint = revision.manifest.get("entrypoint") or {}
    runner_command = body.runner_command or entrypoint.get("command")
    if not runner_command:
        raise field_error(
            ["runner_command"], "required (the project manifest has no entrypoint.command)"
        )
    return project, revision, list(runner_command)


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
    return any(status != JobStatus.COMPLETED for status in found.values())


def build_job(
    account_id: str,
    body: JobSubmit,
    checked: Checked,
    settings: Settings | None,
    *,
    planning: bool,
) -> Job:
    """The job row; a ``planning`` one carries what another planner needs to resume it."""
    plan = checked.plan
    payload = checked.workflow.payload if checked.workflow is not None else body.payload
    if plan.kind == "by":
        # The list lives on in the tasks' element deltas; keeping it in the job row too would
        # make every dispatcher read of the job parse up to 100,000 elements again.
        payload = {**payload, plan.spec["by"]: None}
    warnings = list(checked.revision.warnings) if checked.revision is not None else []
    if settings is not None and settings.sandbox == "none" and checked.recipe is None:
        warnings.append(UNCONFINED)
    if settings is not None and checked.revision is not None:
        cold = job_warning(
            settings.warm_python,
            settings.sandbox,
            checked.revision.manifest,
            checked.runner_command,
        )
        warnings += [cold] if cold else []
    n_tasks = task_count(plan)
    return Job(
        id=new_id("job"),
        account_id=account_id,
        type=None if checked.recipe is not None else body.type or "structured_runner",
        recipe=checked.recipe["recipe"] if checked.recipe is not None else None,
        project_id=checked.project.id if checked.project is not None else None,
        project_name=checked.project.name if checked.project is not None else None,
        revision_id=checked.revision.id if checked.revision is not None else None,
        status=JobStatus.PLANNING if planning else JobStatus.QUEUED,
        priority=body.priority,
        tags=body.tags,
        depends_on=body.depends_on,
        blocked=checked.blocked,
        payload=payload,
        spec=_job_spec(body, checked),
        timeout_s=body.timeout_s,
        max_retries=body.max_retries,
        requirements=body.requirements.model_dump(exclude_none=True) if body.requirements else None,
        resources=checked.options,
        n_total=n_tasks,
        n_queued=0 if planning else n_tasks,
        planned_tasks=0 if planning else n_tasks,
        plan_input=_plan_input(body, checked) if planning else None,
        warnings=warnings,
        meta=body.meta,
        variant=body.variant,
        callback_url=body.callback_url,
        callback_state="pending" if body.callback_url else None,
        created_at=utcnow(),
    )


def _job_spec(body: JobSubmit, checked: Checked) -> dict[str, Any]:
    plan = checked.plan
    return {
        "kind": plan.kind,
        "fan_out": plan.spec,
        "batch_size": plan.batch_size,
        "element_count": plan.element_count,
        "merge_strategy": checked.merge_strategy,
        "merge_key": body.merge_key,
        "weight_field": body.weight_field,
        "runner_command": checked.runner_command,
        "minimums": checked.minimums,
        "checkpointing": body.checkpointing.model_dump() if body.checkpointing else None,
        **_cache_spec(body),
        **(checked.recipe or {}),
        **({"workflow": checked.workflow.spec} if checked.workflow is not None else {}),
    }


def _cache_spec(body: JobSubmit) -> dict[str, Any]:
    """``{"cache": policy}`` for a job that uses the result cache, else nothing."""
    policy = policy_from_request(body.cache)
    return {"cache": policy.stored()} if policy is not None else {}


async def insert_job(db: AsyncSession, job: Job, idempotency_key: str | None) -> Job | None:
    """Flush the job row (and its idempotency key); if a concurrent submit took the same key
    first, roll back and return that submit's job instead."""
    db.add(job)
    if idempotency_key:
        key = IdempotencyKey(
            account_id=job.account_id, key=idempotency_key, job_id=job.id, created_at=job.created_at
        )
        db.add(key)
    try:
        await db.flush()
    except IntegrityError:
        await db.rollback()
        previous = await find_idempotent(db, job.account_id, idempotency_key or "")
        if previous is None:
            raise
        return previous
    return None
