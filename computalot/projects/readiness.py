"""``POST /projects/:name/init`` and ``invalidate`` (docs/llms-full.md, "Projects").

Init warms the active revision on every alive Ray node: one Ray task per node, pinned to it
(``NodeAffinitySchedulingStrategy(soft=False)``), in the revision's runtime_env, runs
``engine.project_init.warm_here`` there. The API replica submits those tasks itself and awaits
their refs on its event loop (nothing blocks it); the request only writes the ``initializing``
rows and answers 202, a background task records each node's report as it arrives. The state is
in the store, so any replica shows it. A node already warm for the revision is not warmed again
(re-init of a ready revision answers ``ready`` at once).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from computalot.engine.project_init import plan_from_manifest
from computalot.errors import NotReady
from computalot.projects.events import write_project_event
from computalot.projects.warm_state import (
    generation_of,
    node_rows,
    set_node,
    status_of,
    write_status_event,
)
from computalot.settings import Settings
from computalot.store.db import Store
from computalot.store.models import Project, Revision

log = logging.getLogger("computalot.api")

#: Seconds the background task waits for one node's report before it calls the node failed.
NODE_REPORT_TIMEOUT_S = 3600.0
#: Background inits of this process, kept referenced until they end.
_RUNNING: set[asyncio.Task[None]] = set()


def alive_node_ids() -> list[str]:
    """Ray ids of the alive nodes that run tasks (not a head with no CPU for them), sorted
    (blocking: a GCS call); 503 without a cluster (the API served outside Ray)."""
    import ray

    if not ray.is_initialized():
        raise NotReady("init needs the compute cluster, and this API process is not connected")
    from computalot.engine.placement import runs_tasks

    nodes = [n for n in ray.nodes() if n.get("Alive") and runs_tasks(n.get("Resources") or {})]
    return sorted(str(n["NodeID"]) for n in nodes)


def _requirements(revision: Revision) -> list[str] | None:
    runtime = (revision.manifest or {}).get("runtime") or {}
    path = Path(revision.path) / str(runtime.get("requirements") or "requirements.txt")
    if not path.is_file():
        return None
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")] or None


async def _runtime_env(revision: Revision) -> dict[str, Any]:
    from computalot.engine.packages import ensure_uploaded, revision_runtime_env

    uri = await ensure_uploaded(revision.content_hash, revision.path, revision.size_bytes)
    requirements = await asyncio.to_thread(_requirements, revision)
    return revision_runtime_env(uri, requirements=requirements, env_vars={})


async def start_init(
    store: Store, db: Any, project: Project, revision: Revision, settings: Settings
) -> dict[str, Any]:
    """Mark the cold nodes ``initializing``, start warming them, and answer the 202 body."""
    node_ids = await asyncio.to_thread(alive_node_ids)
    rows = {r.node_id: r for r in await node_rows(db, project.id, revision.id)}
    cold = [n for n in node_ids if n not in rows or rows[n].state != "ready"]
    if not cold:
        status, _rows = await status_of(db, project, revision, len(node_ids))
        return {**status, "status": status["state"], "nodes_started": 0}
    await write_project_event(
        db,
        project.id,
        project.account_id,
        "init",
        {"phase": "started", "revision_id": revision.id, "nodes": len(cold)},
    )
    for node_id in cold:
        await set_node(
            db,
            project_id=project.id,
            account_id=project.account_id,
            revision_id=revision.id,
            node_id=node_id,
            state="initializing",
        )
    status = await write_status_event(db, project, revision, len(node_ids))
    plan = plan_from_manifest(
        revision.manifest,
        project_id=project.id,
        account_id=project.account_id,
        revision_id=revision.id,
        generation=generation_of(project),
    )
    runtime_env = await _runtime_env(revision)
    await db.commit()
    from computalot.sandbox.policy import policy_for

    runtime = (revision.manifest or {}).get("runtime") or {}
    policy = policy_for(settings, {}, str(runtime.get("network") or "host"))
    task = asyncio.create_task(
        _warm_nodes(store, project.id, revision.id, plan, policy, runtime_env, cold)
    )
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    return {**status, "status": "initializing", "nodes_started": len(cold)}


def _submit(plan: Any, policy: Any, runtime_env: dict[str, Any], node_id: str) -> Any:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from computalot.engine.project_init import warm_here

    remote = ray.remote(max_retries=0)(warm_here)
    return remote.options(
        num_cpus=0,
        runtime_env=runtime_env,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        name=f"computalot-init:{plan.revision_id}",
    ).remote(plan, policy)


async def _one_node(
    plan: Any, policy: Any, runtime_env: dict[str, Any], node_id: str
) -> tuple[str, dict[str, Any]]:
    """(node id, its report); a node that cannot run the task or does not answer failed."""
    try:
        ref = _submit(plan, policy, runtime_env, node_id)
        return node_id, dict(await asyncio.wait_for(ref, NODE_REPORT_TIMEOUT_S))
    except Exception as exc:
        return node_id, {
            "state": "failed",
            "duration_s": None,
            "validation": [],
            "error": {
                "code": "init_failed",
                "message": f"the node did not report: {type(exc).__name__}",
                "check": None,
                "output": str(exc)[-500:],
            },
        }


async def _warm_nodes(
    store: Store,
    project_id: str,
    revision_id: str,
    plan: Any,
    policy: Any,
    runtime_env: dict[str, Any],
    node_ids: list[str],
) -> None:
    """Await each node's report and record it as it comes (the request has ended)."""
    try:
        for done in asyncio.as_completed(
            [_one_node(plan, policy, runtime_env, n) for n in node_ids]
        ):
            node_id, report = await done
            await _record(store, project_id, revision_id, plan.generation, node_id, report)
        async with store.sessions() as db:
            project = await db.get(Project, project_id)
            if project is None:
                return
            revision = await db.get(Revision, revision_id)
            total = len(await asyncio.to_thread(alive_node_ids))
            status, _rows = await status_of(db, project, revision, total)
            await write_project_event(
                db,
                project_id,
                project.account_id,
                "init",
                {"phase": "finished", "revision_id": revision_id, "state": status["state"]},
            )
            await db.commit()
    except Exception:
        log.exception("init of project %s revision %s: recording failed", project_id, revision_id)


async def _record(
    store: Store,
    project_id: str,
    revision_id: str,
    generation: int,
    node_id: str,
    report: dict[str, Any],
) -> None:
    """One node's report; skipped when the project moved on (invalidated, a new push)."""
    async with store.sessions() as db:
        project = await db.get(Project, project_id)
        if project is None or project.active_revision_id != revision_id:
            return
        if generation_of(project) != generation:
            return
        state = "ready" if report.get("state") == "ready" else "failed"
        await set_node(
            db,
            project_id=project_id,
            account_id=project.account_id,
            revision_id=revision_id,
            node_id=node_id,
            state=state,
            report=report,
        )
        revision = await db.get(Revision, revision_id)
        total = len(await asyncio.to_thread(alive_node_ids))
        await write_status_event(db, project, revision, total)
        await db.commit()


async def details(
    db: Any, project: Project, revision: Revision | None, nodes_total: int
) -> dict[str, Any]:
    """``GET /projects/:name/status/details``."""
    status, rows = await status_of(db, project, revision, nodes_total)
    status["nodes"] = [{k: v for k, v in r.items() if k != "validation"} for r in rows]
    validation: list[dict[str, Any]] = []
    for r in rows:
        for check in r["validation"]:
            validation.append({"node": r["node"], **check})
    status["validation"] = validation
    status["recommended_action"] = _action(status, rows)
    return status


def _action(status: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    state = status["state"]
    if state == "empty":
        return "push code with POST /api/v1/projects/:name/push"
    if state == "failed":
        failed = next(r for r in rows if r["state"] == "failed")
        error = failed["error"] or {}
        if error.get("code") == "init_lost":
            return f"POST /api/v1/projects/:name/init again: {failed['node']} never reported"
        return (
            f"fix {error.get('check') or 'the failing step'!s} (it failed on {failed['node']}; "
            "its output is in nodes[].error.output), push the fix, then POST "
            "/api/v1/projects/:name/init again"
        )
    if state == "initializing":
        return "wait: the nodes are being prepared (GET this again, or follow /stream)"
    if state == "ready":
        return "none: the project is ready"
    return (
        "POST /api/v1/projects/:name/init to prepare every node, or submit a job: its first "
        "task on each node prepares it"
    )
