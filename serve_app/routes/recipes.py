"""Recipes: the catalog, one recipe's schema, and recipe jobs (docs/recipes.md).

``POST /api/v1/recipes/:name/jobs`` is ``POST /api/v1/jobs`` with ``"recipe": name``: the same
body (``payload`` plus the common job fields), idempotency keys, billing hold and answer. The
catalog and a recipe's entry say per operation whether the cluster can run it now (its worker
capability against the alive nodes as the engine last read them: a few seconds stale at most).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from computalot.billing.x402 import PAYMENT_RESPONSE_HEADER
from computalot.errors import field_error
from computalot.jobs.recipe_submit import find_recipe, operation_state
from computalot.schemas.jobs import JobSubmit
from recipes.registry import Recipe, recipes
from serve_app.deps import Caller, Db, Writer
from serve_app.routes.jobs import IdempotencyKey, _submit
from serve_app.routes.quotes import PaidFirst
from serve_app.strict_json import StrictJSONRoute

router = APIRouter(prefix="/api/v1/recipes", tags=["recipes"], route_class=StrictJSONRoute)


async def _nodes(request: Request) -> list[dict[str, float]]:
    """The alive nodes' resources as the engine last read them (cached; [] when unknown)."""
    engine = request.app.state.engine
    return list(await engine.nodes()) if engine is not None else []


def _operations(recipe: Recipe, nodes: list[dict[str, float]]) -> list[dict[str, Any]]:
    """Each operation, its worker capability and whether the cluster can run it now."""
    entries = []
    for op in recipe.operations:
        available, reason = operation_state(recipe, op.name, nodes)
        entries.append(
            {
                "name": op.name,
                "description": op.description,
                "capability": op.capability,
                "available": available,
                "reason": reason,
            }
        )
    return entries


def recipe_summary(recipe: Recipe, nodes: list[dict[str, float]]) -> dict[str, Any]:
    """``available``: some operation runs now; ``unavailable_reason``: why none does."""
    states = [operation_state(recipe, op.name, nodes) for op in recipe.operations]
    available = any(ok for ok, _why in states)
    return {
        "name": recipe.name,
        "description": recipe.description,
        "operations": [op.name for op in recipe.operations],
        "placement": recipe.placement,
        "available": available,
        "unavailable_reason": None if available else (recipe.unavailable or states[0][1]),
    }


@cache
def _static_detail(name: str) -> dict[str, Any]:
    """The parts of a recipe's entry fixed for the process's life (built once)."""
    recipe = find_recipe(name)
    return {
        "payload_schema": recipe.payload_model.model_json_schema(),
        "artifact_inputs": list(recipe.artifact_inputs),
        "result_schema": recipe.result_schema,
        "examples": list(recipe.examples),
    }


def recipe_detail(name: str, nodes: list[dict[str, float]]) -> dict[str, Any]:
    """One recipe's full entry; its operations' availability follows ``nodes``."""
    recipe = find_recipe(name)
    return {
        **recipe_summary(recipe, nodes),
        "operations": _operations(recipe, nodes),
        **_static_detail(recipe.name),
    }


@router.get("")
async def list_recipes(caller: Caller, request: Request) -> dict[str, Any]:
    nodes = await _nodes(request)
    return {"recipes": [recipe_summary(r, nodes) for r in recipes().values()]}


@router.get("/{name}")
async def get_recipe(name: str, caller: Caller, request: Request) -> dict[str, Any]:
    return recipe_detail(find_recipe(name).name, await _nodes(request))


@router.post("/{name}/jobs", status_code=201)
async def create_recipe_job(
    name: str,
    body: JobSubmit,
    request: Request,
    caller: Writer,
    db: Db,
    paid: PaidFirst,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    recipe = find_recipe(name)
    if body.recipe is not None and body.recipe != recipe.name:
        raise field_error(["recipe"], f"the path names recipe {recipe.name!r}; leave recipe out")
    body = body.model_copy(update={"recipe": recipe.name})
    job, created = await _submit(request, db, caller, body, idempotency_key)
    answer = JSONResponse(job, status_code=201 if created else 200)
    if paid is not None:
        answer.headers[PAYMENT_RESPONSE_HEADER] = paid.settlement
    return answer
