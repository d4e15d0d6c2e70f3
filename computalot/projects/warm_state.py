"""Which nodes have warmed a project's revision, and the project status built from that
(docs/llms-full.md, "Projects": status, status/details, invalidate, stream).

One ``ProjectNode`` row per (project, revision, node): ``initializing``, ``ready`` or ``failed``,
written by ``POST /projects/:name/init`` (``projects.readiness``) and by the dispatcher when an
attempt warmed its node or completed there (``engine.settling``). Every change writes a ``node``
event and a ``status`` snapshot into the project's stream in the same transaction.

``Project.warm_state`` holds ``{"generation": N}``: ``POST /projects/:name/invalidate`` bumps it
and deletes the active revision's rows, so a node marker of an older generation no longer
counts (``engine.project_init``) and a report of one is ignored here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.projects.events import write_project_event
from computalot.store.models import Project, ProjectNode, Revision
from computalot.timeutil import iso, utcnow

#: (project id, revision id, Ray node id, generation)
NodeKey = tuple[str, str, str, int]
#: Seconds after which a node still ``initializing`` is shown failed: longer than any init
#: may take (``projects.readiness.NODE_REPORT_TIMEOUT_S``).
STALE_INIT_S = 3900.0


def generation_of(project: Project) -> int:
    state = project.warm_state if isinstance(project.warm_state, dict) else {}
    value = state.get("generation")
    return int(value) if isinstance(value, int) else 0


async def warm_generations(db: AsyncSession, project_ids: list[str]) -> dict[str, int]:
    """``{project id: generation}`` in one query."""
    rows = await db.execute(
        select(Project.id, Project.warm_state).where(Project.id.in_(project_ids))
    )
    out = {}
    for pid, state in rows.all():
        value = state.get("generation") if isinstance(state, dict) else None
        out[str(pid)] = int(value) if isinstance(value, int) else 0
    return out


async def node_rows(db: AsyncSession, project_id: str, revision_id: str) -> list[ProjectNode]:
    query = select(ProjectNode).where(
        ProjectNode.project_id == project_id, ProjectNode.revision_id == revision_id
    )
    rows = list((await db.execute(query)).scalars())
    return sorted(rows, key=lambda r: (_number(r.node), r.node_id))


def _number(name: str) -> int:
    try:
        return int(name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0


async def public_name(db: AsyncSession, project_id: str, node_id: str) -> str:
    """The node's public name in this project (``node-1``…): the one it had for any revision,
    else the next number in order of first use. Ray's node ids are never shown."""
    rows = (
        await db.execute(
            select(ProjectNode.node_id, ProjectNode.node).where(
                ProjectNode.project_id == project_id
            )
        )
    ).all()
    for nid, name in rows:
        if nid == node_id:
            return str(name)
    return f"node-{max((_number(str(n)) for _i, n in rows), default=0) + 1}"


def node_out(row: ProjectNode) -> dict[str, Any]:
    return {
        "node": row.node,
        "state": row.state,
        "warmed_at": iso(row.warmed_at) if row.warmed_at else None,
        "duration_s": row.duration_s,
        "error": row.error,
    }


async def set_node(
    db: AsyncSession,
    *,
    project_id: str,
    account_id: str,
    revision_id: str,
    node_id: str,
    state: str,
    report: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> ProjectNode:
    """Write one node's row (insert or update) and its ``node`` event."""
    now = now or utcnow()
    row = await db.get(ProjectNode, (project_id, revision_id, node_id))
    if row is None:
        row = ProjectNode(
            project_id=project_id,
            revision_id=revision_id,
            node_id=node_id,
            account_id=account_id,
            node=await public_name(db, project_id, node_id),
            updated_at=now,
        )
        db.add(row)
    report = report or {}
    row.state = state
    row.updated_at = now
    if state == "initializing":
        row.started_at, row.warmed_at, row.error = now, None, None
    else:
        row.warmed_at = now if state == "ready" else None
        row.duration_s = report.get("duration_s")
        row.error = report.get("error")
        if "validation" in report:
            row.validation = list(report.get("validation") or [])
    await db.flush()
    await write_project_event(
        db, project_id, account_id, "node", {"revision_id": revision_id, **node_out(row)}
    )
    return row


def node_view(row: ProjectNode, now: datetime) -> dict[str, Any]:
    """A node's row as shown (``node_out`` plus its checks). A row still ``initializing`` long
    after any init could have reported (its replica stopped meanwhile) shows as failed
    (``init_lost``): POST init again prepares that node anew."""
    view = {**node_out(row), "validation": list(row.validation or [])}
    started = row.started_at or row.updated_at
    if row.state == "initializing" and (now - started).total_seconds() > STALE_INIT_S:
        view["state"] = "failed"
        view["error"] = {
            "code": "init_lost",
            "message": "the init of this node never reported (the API replica running it stopped)",
            "check": None,
            "output": "",
        }
    return view


async def status_of(
    db: AsyncSession, project: Project, revision: Revision | None, nodes_total: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``GET /projects/:name/status`` and the node views it was built from (``node_view``).
    ``nodes_total``: the cluster's alive nodes (0 when unknown: the rows count instead)."""
    now = utcnow()
    found = await node_rows(db, project.id, revision.id) if revision is not None else []
    rows = [node_view(r, now) for r in found]
    ready = sum(1 for r in rows if r["state"] == "ready")
    total = nodes_total or len(rows)
    if revision is None:
        state = "empty"
    elif any(r["state"] == "failed" for r in rows):
        state = "failed"
    elif any(r["state"] == "initializing" for r in rows):
        state = "initializing"
    elif total and ready >= total:
        state = "ready"
    else:
        state = "published"
    status = {
        "project": project.name,
        "revision_id": revision.id if revision else None,
        "content_hash": revision.content_hash if revision else None,
        "can_accept_new_jobs": revision is not None,
        "ready_for_jobs": state == "ready",
        "state": state,
        "nodes_ready": min(ready, total),
        "nodes_total": total,
        "warnings": list(revision.warnings) if revision else [],
    }
    return status, rows


async def write_status_event(
    db: AsyncSession, project: Project, revision: Revision | None, nodes_total: int
) -> dict[str, Any]:
    """Write the project's status snapshot into its stream; the snapshot."""
    status, _rows = await status_of(db, project, revision, nodes_total)
    await write_project_event(db, project.id, project.account_id, "status", status)
    return status


async def forget(db: AsyncSession, project: Project) -> None:
    """Invalidate: a new generation, and no row of the active revision."""
    project.warm_state = {"generation": generation_of(project) + 1}
    if project.active_revision_id:
        await db.execute(
            delete(ProjectNode).where(
                ProjectNode.project_id == project.id,
                ProjectNode.revision_id == project.active_revision_id,
            )
        )


async def record_reports(
    db: AsyncSession,
    ready: Iterable[NodeKey],
    reports: dict[NodeKey, dict[str, Any]],
    nodes_total: int,
) -> None:
    """Record what attempts learned about their nodes (``engine.settling``): a key in
    ``ready`` ran a task of the revision (ready unless already recorded otherwise), a report
    is an init run on that node. Keys of an older generation or of a revision no longer
    active are skipped. One status snapshot per project whose rows changed."""
    changed: dict[str, Project] = {}
    entries: list[tuple[NodeKey, dict[str, Any] | None]] = [(k, None) for k in sorted(ready)]
    entries += sorted(reports.items())
    for key, report in entries:
        project_id, revision_id, node_id, generation = key
        project = changed.get(project_id) or await db.get(Project, project_id)
        if project is None or project.active_revision_id != revision_id:
            continue
        if generation_of(project) != generation:
            continue
        if report is None:
            row = await db.get(ProjectNode, (project_id, revision_id, node_id))
            if row is not None and row.state == "ready":
                continue
            report = {"duration_s": 0.0, "error": None}
        state = "ready" if report.get("state", "ready") == "ready" else "failed"
        await set_node(
            db,
            project_id=project_id,
            account_id=project.account_id,
            revision_id=revision_id,
            node_id=node_id,
            state=state,
            report=report,
        )
        changed[project_id] = project
    for project in changed.values():
        revision = await db.get(Revision, project.active_revision_id)
        await write_status_event(db, project, revision, nodes_total)
