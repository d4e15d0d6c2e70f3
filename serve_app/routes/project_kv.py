"""A project's key-value store (docs/llms-full.md, "Project KV"): thin, the rules live in
``computalot.projects.kv``.

These routes take a running task's token (``flt_``) as well as API keys and wallet sessions;
a task token reaches only the project of its job (another project is 404, like another
account's).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response

from computalot.auth.principal import Principal
from computalot.errors import BadRequest, NotFound, PayloadTooLarge
from computalot.jsonsafe import MAX_JSON_DEPTH, TooDeep, loads_strict
from computalot.projects import kv, service
from computalot.store.models import Project
from serve_app.deps import Db, TaskOrCaller, TaskOrWriter
from serve_app.strict_json import StrictJSONRoute

router = APIRouter(prefix="/api/v1/projects", tags=["project kv"], route_class=StrictJSONRoute)

IfMatch = Annotated[str | None, Header(alias="If-Match")]


async def _project(db: Any, caller: Principal, name: str) -> Project:
    project = await service.get_project(db, caller.account_id, name)
    scope = caller.task_scope
    if scope is not None and scope.project_id != project.id:
        raise NotFound(
            f"project {name!r} not found",
            details=[{"loc": ["path", "name"], "msg": "a task token reaches its own project only"}],
            recommended_action="use the project of the job this task belongs to",
        )
    return project


def _too_large() -> PayloadTooLarge:
    limit = kv.MAX_VALUE_BYTES
    return PayloadTooLarge(
        f"a KV value is at most {limit} bytes of JSON",
        details=[{"loc": ["body"], "msg": f"limit is {limit} bytes"}],
        recommended_action="store big data as an artifact and keep its id in the KV",
    )


async def _read_value(request: Request) -> Any:
    """The body as JSON, refused (413) as soon as it passes the KV limit: never read whole."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > kv.MAX_VALUE_BYTES:
        raise _too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > kv.MAX_VALUE_BYTES:
            raise _too_large()
    if not body.strip():
        raise BadRequest(
            "the body must be a JSON value",
            details=[{"loc": ["body"], "msg": "empty body"}],
            recommended_action='send the value as JSON, e.g. {"x": 1}, 42 or "text"',
        )
    try:
        return loads_strict(bytes(body))
    except TooDeep:
        raise BadRequest(
            f"the value nests deeper than {MAX_JSON_DEPTH} levels",
            details=[{"loc": ["body"], "msg": f"at most {MAX_JSON_DEPTH} levels of nesting"}],
        ) from None
    except ValueError as exc:
        raise BadRequest(
            "the body is not valid JSON",
            details=[{"loc": ["body"], "msg": str(exc)[:200]}],
            recommended_action="send the value as JSON (no NaN or Infinity)",
        ) from None


def _etag(response: Response, version: int) -> None:
    response.headers["ETag"] = f'"{version}"'


@router.get("/{name}/kv")
async def list_kv(
    name: str,
    caller: TaskOrCaller,
    db: Db,
    prefix: Annotated[str, Query(max_length=kv.MAX_KEY_CHARS)] = "",
    limit: Annotated[int, Query(ge=1, le=kv.MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
    values: bool = False,
) -> dict[str, Any]:
    """Keys in key order (``version``, ``size``, ``updated_at``; ``value`` with
    ``?values=true``), ``next_cursor`` for the next page."""
    project = await _project(db, caller, name)
    return await kv.list_values(
        db, project, prefix=prefix, limit=limit, cursor=cursor, values=values
    )


@router.get("/{name}/kv/{key:path}")
async def get_kv(
    name: str, key: str, caller: TaskOrCaller, db: Db, response: Response
) -> dict[str, Any]:
    project = await _project(db, caller, name)
    entry = await kv.get_value(db, project, kv.check_key(key))
    _etag(response, entry.version)
    return entry.out()


@router.put("/{name}/kv/{key:path}")
async def put_kv(
    name: str,
    key: str,
    request: Request,
    caller: TaskOrWriter,
    db: Db,
    response: Response,
    if_match: IfMatch = None,
) -> dict[str, Any]:
    """Body: any JSON value (≤ 1 MiB). ``If-Match: <version>`` compare-and-set, ``0`` = must
    not exist yet, ``*`` = must exist; 409 when it does not hold (nothing is written)."""
    kv.check_key(key)
    expected = kv.parse_if_match(if_match)
    project = await _project(db, caller, name)
    value = await _read_value(request)
    entry = await kv.put_value(db, project, caller.account_id, key, value, expected)
    await db.commit()
    _etag(response, entry.version)
    return entry.out()


@router.delete("/{name}/kv/{key:path}")
async def delete_kv(
    name: str, key: str, caller: TaskOrWriter, db: Db, if_match: IfMatch = None
) -> dict[str, Any]:
    kv.check_key(key)
    expected = kv.parse_if_match(if_match)
    project = await _project(db, caller, name)
    answer = await kv.delete_value(db, project, key, expected)
    await db.commit()
    return answer
