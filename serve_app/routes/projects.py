"""Projects: CRUD, the raw-tarball push, and readiness (docs/llms-full.md, "Projects")."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from computalot.billing.quotes import INIT_MINIMUM_USD, require_available
from computalot.engine.placement import runs_tasks
from computalot.errors import field_error
from computalot.projects import readiness, service, warm_state
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
    nodes_total = await _nodes_total(request)  # before the push's writes: nothing waits on it
    answer = await service.push_revision(db, project, upload, settings)
    revision = await service.get_revision(db, project.active_revision_id)
    await warm_state.write_status_event(db, project, revision, nodes_total)
    await db.commit()
    return answer


@router.post("/{name}/init", status_code=202)
async def init_project(
    name: str, request: Request, caller: Writer, db: Db, settings: AppSettings, _paid: PaidFirst
) -> dict[str, Any]:
    """Warm the active revision on every alive node (``projects.readiness``); 402 with a quote
    while available < $5 (init itself is free). Follow it with ``status`` or ``stream``."""
    project, revision = await service.get_project_with_revision(db, caller.account_id, name)
    await require_available(
        db, caller.account_id, INIT_MINIMUM_USD, kind="init", what="init", settings=settings
    )
    if revision is None:
        raise field_error(["name"], "the project has no revision yet: push code first")
    answer = await readiness.start_init(request.app.state.store, db, project, revision, settings)
    await db.commit()
    return answer


@router.post("/{name}/invalidate")
async def invalidate_project(name: str, caller: Writer, db: Db, request: Request) -> dict[str, Any]:
    """Forget the active revision's warm state: its node rows, and (a new generation) every
    node's marker; the next init or job prepares it again."""
    project, revision = await service.get_project_with_revision(db, caller.account_id, name)
    await warm_state.forget(db, project)
    total = await _nodes_total(request)
    status = await warm_state.write_status_event(db, project, revision, total)
    await db.commit()
    return status


@router.get("/{name}/status")
async def project_status(name: str, caller: Caller, db: Db, request: Request) -> dict[str, Any]:
    project, revision = await service.get_project_with_revision(db, caller.account_id, name)
    status, _rows = await warm_state.status_of(db, project, revision, await _nodes_total(request))
    return status


@router.get("/{name}/status/details")
async def project_status_details(
    name: str, caller: Caller, db: Db, request: Request
) -> dict[str, Any]:
    project, revision = await service.get_project_with_revision(db, caller.account_id, name)
    return await readiness.details(db, project, revision, await _nodes_total(request))


async def _nodes_total(request: Request) -> int:
    """The cluster's alive nodes that run tasks (the engine's cached view); 0 without an
    engine."""
    engine = request.app.state.engine
    return sum(map(runs_tasks, await engine.nodes())) if engine is not None else 0
