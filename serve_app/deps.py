"""Route dependencies: route signatures read like contracts (``Db``, ``Caller``, ``Writer``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.auth.principal import Principal, authenticate
from computalot.auth.task_tokens import is_task_token
from computalot.errors import Forbidden, Unauthorized
from computalot.ids import hash_token
from computalot.settings import Settings
from computalot.store.db import Store
from serve_app.auth_cache import AuthCache


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    async with get_store(request).sessions() as session:
        yield session


#: Function-scoped: the session (and its pooled connection) goes back when the route returns,
#: not when its response has been sent, so a streamed response (SSE) holds none.
Db = Annotated[AsyncSession, Depends(get_db, scope="function")]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return token.strip()


async def _principal(request: Request, task_tokens: str | None) -> Principal:
    """The caller, from this replica's cache (``serve_app.auth_cache``: at most half a second
    old, so a revocation is seen everywhere within a second) or the store; rate limited. A
    task token (``flt_``) is checked against the store each time (only a few routes take
    one, none of them the hot reads)."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("missing bearer token")
    if is_task_token(token):  # not cached: its task's end must be seen at once
        async with get_store(request).sessions() as db:
            principal = await authenticate(db, token, task_tokens=task_tokens)
    else:
        cache: AuthCache = request.app.state.auth_cache
        digest = hash_token(token)
        cached = cache.get(digest)
        if cached is None:
            async with get_store(request).sessions() as db:
                cached = await authenticate(db, token, task_tokens=task_tokens)
            cache.put(digest, cached, expires_at=cached.expires_at)
        principal = cached
    request.state.principal = principal
    request.app.state.rate_limiter.check(principal.account_id)
    return principal


async def get_caller(request: Request) -> Principal:
    return await _principal(request, None)


async def get_task_or_caller(request: Request) -> Principal:
    """Like :func:`get_caller`, and a running task's token (``flt_``) is accepted too: only
    the routes a task token may use (its project's KV, artifact uploads) depend on this; every
    other route refuses task tokens through :func:`get_caller`."""
    secret = get_settings_dep(request).task_token_secret
    return await _principal(request, secret.get_secret_value() if secret is not None else "")


async def get_task_or_writer(
    caller: Annotated[Principal, Depends(get_task_or_caller)],
) -> Principal:
    if not caller.can_write:
        raise Forbidden(f"role '{caller.role}' is read-only")
    return caller


async def get_writer(caller: Annotated[Principal, Depends(get_caller)]) -> Principal:
    if not caller.can_write:
        raise Forbidden(f"role '{caller.role}' is read-only")
    return caller


async def get_admin(caller: Annotated[Principal, Depends(get_caller)]) -> Principal:
    if not caller.is_admin:
        raise Forbidden("admin role required")
    return caller


Caller = Annotated[Principal, Depends(get_caller)]
Writer = Annotated[Principal, Depends(get_writer)]
Admin = Annotated[Principal, Depends(get_admin)]
#: Opt-ins for a task token (``flt_``): a project's KV and artifact uploads only.
TaskOrCaller = Annotated[Principal, Depends(get_task_or_caller)]
TaskOrWriter = Annotated[Principal, Depends(get_task_or_writer)]
