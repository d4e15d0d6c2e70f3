"""Projects: CRUD, the raw-tarball push, and readiness (docs/llms-full.md, "Projects")."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from computalot.billing.quotes import INIT_MINIMUM_USD, require_available
from computalot.errors import Unimplemented
from computalot.projects import service
from computalot.schemas.accounts import Strict
from serve_app.deps import AppSettings, Caller, Db, Writer
from serve_app.routes.quotes import PaidFirst
from serve_app.strict_json import StrictJSONRoute

router = APIRouter(prefix="/api/v1/projects", tags=["projects"], route_class=StrictJSONRoute)


class ProjectCreate(Strict):
    name: str = Field(min_length=1, max_length=63)
    remote_dir: str | None = Field(default=None, max_length=1024)
    description: str | None = Field(default=None, max_length=10_000)


class ProjectUpdate(Strict):
    remote_dir: str | None = Field(default=None, max_length=1024)
    description: str | None = Field(default=None, max_length=10_000)


@router.post("", status_code=201)
async def create_project(body: ProjectCreate, caller: Writer, db: Db) -> dict[str, Any]:
    project = await service.create_project(
        db,
        caller.account_id,
        name=body.name,
        remote_dir=body.remote_dir,
        description=body.description,
    )
    await db.commit()
    return service.project_out(project, None)


@router.get("")
async def list_projects(caller: Caller, db: Db) -> dict[str, Any]:
    projects = await service.list_projects(db, caller.account_id)
    return {"projects": [service.project_out(p, revision) for p, revision in projects]}


@router.get("/{name}")
async def get_project(name: str, caller: Caller, db: Db) -> dict[str, Any]:
    project, revision = await service.get_project_with_revision(db, caller.account_id, name)
    return service.project_out(project, revision)


@router.put("/{name}")
async def update_project(name: str, body: ProjectUpdate, caller: Writer, db: Db) -> dict[str, Any]:
    project = await service.get_project(db, caller.account_id, name)
    for key, value in body.model_dump(exclude_unset=True).items():
        setattr(project, key, value)
    await db.commit()
    return service.project_out(project, await service.get_revision(db, project.active_revision_id))


@router.delete("/{name}")
async def delete_project(name: str, caller: Writer, db: Db) -> dict[str, Any]:
    project = await service.get_project(db, caller.account_id, name)
    await service.delete_project(db, project)
    await db.commit()
    return {"deleted": True, "name": name}


@router.post("/{name}/push")
async def push_project(
    name: str, request: Request, caller: Writer, db: Db, settings: AppSettings
) -> dict[str, Any]:
    """Raw gzip'd tarball body (``curl --data-binary @code.tar.gz``), not multipart."""
    project = await service.get_project(db, caller.account_id, name)
    upload = await service.receive_upload(
        request.stream(), settings.data_dir.resolve() / "uploads", settings.max_tarball_bytes
    )
    answer = await service.push_revision(db, project, upload, settings)
    await db.commit()
    return answer


@router.post("/{name}/init", status_code=202)
async def init_project(
    name: str, caller: Writer, db: Db, settings: AppSettings, _paid: PaidFirst
) -> dict[str, Any]:
    """Init's funds rule is real: 402 with a quote while available < $5 (init itself is
    free). Warming every node ahead of jobs is not built: past the rule the answer is 501."""
    project = await service.get_project(db, caller.account_id, name)
    await require_available(
        db, caller.account_id, INIT_MINIMUM_USD, kind="init", what="init", settings=settings
    )
    raise Unimplemented(
        f"init of project {project.name!r} is not available yet: nodes are prepared by the "
        "first job that runs on each of them",
        details=[{"loc": ["name"], "msg": "init is not built; the funds check passed"}],
        recommended_action="submit a job: its first task on each node prepares the revision",
    )


@router.get("/{name}/status")
async def project_status(name: str, caller: Caller, db: Db, request: Request) -> dict[str, Any]:
    project, revision = await service.get_project_with_revision(db, caller.account_id, name)
    return await _status(request, project, revision)


@router.get("/{name}/status/details")
async def project_status_details(
    name: str, caller: Caller, db: Db, request: Request
) -> dict[str, Any]:
    project, revision = await service.get_project_with_revision(db, caller.account_id, name)
    status = await _status(request, project, revision)
    warm = (project.warm_state or {}).get(revision.id, {}) if revision else {}
    status["nodes"] = [
        {
            "node": f"node-{i + 1}",
            "state": "ready",
            "warmed_at": at,
            "duration_s": None,
            "error": None,
        }
        for i, at in enumerate(sorted(warm.values()))
    ]
    status["validation"] = []
    status["warnings"] = list(revision.warnings) if revision else []
    status["recommended_action"] = (
        "push code with POST /api/v1/projects/:name/push"
        if revision is None
        else "submit a job; the first job on a node prepares the runtime"
        if not warm
        else "none: the project is ready"
    )
    return status


async def _status(request: Request, project: Any, revision: Any) -> dict[str, Any]:
    engine = request.app.state.engine
    nodes = await engine.nodes() if engine is not None else []
    warm = (project.warm_state or {}).get(revision.id, {}) if revision else {}
    state = "ready" if warm else "published" if revision else "empty"
    return {
        "project": project.name,
        "revision_id": revision.id if revision else None,
        "content_hash": revision.content_hash if revision else None,
        "can_accept_new_jobs": revision is not None,
        "ready_for_jobs": bool(warm),
        "state": state,
        "nodes_ready": len(warm),
        "nodes_total": len(nodes),
        "warnings": list(revision.warnings) if revision else [],
    }
