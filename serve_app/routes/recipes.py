"""Recipes: the catalog, one recipe's schema, and recipe jobs (docs/recipes.md).

``POST /api/v1/recipes/:name/jobs`` is ``POST /api/v1/jobs`` with ``"recipe": name``: the same
body (``payload`` plus the common job fields), idempotency keys, billing hold and answer.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from computalot.billing.x402 import PAYMENT_RESPONSE_HEADER
from computalot.errors import field_error
from computalot.jobs.recipe_submit import find_recipe
from computalot.schemas.jobs import JobSubmit
from recipes.registry import Recipe, recipes
from serve_app.deps import Caller, Db, Writer
from serve_app.routes.jobs import IdempotencyKey, _submit
from serve_app.routes.quotes import PaidFirst
from serve_app.strict_json import StrictJSONRoute

router = APIRouter(prefix="/api/v1/recipes", tags=["recipes"], route_class=StrictJSONRoute)


def _available(recipe: Recipe) -> bool:
    return recipe.unavailable is None and any(op.available for op in recipe.operations)


def recipe_summary(recipe: Recipe) -> dict[str, Any]:
    return {
        "name": recipe.name,
        "description": recipe.description,
        "operations": [op.name for op in recipe.operations],
        "placement": recipe.placement,
        "available": _available(recipe),
        "unavailable_reason": recipe.unavailable,
    }


@cache
def recipe_detail(name: str) -> dict[str, Any]:
    """One recipe's full entry (built once: recipes are fixed for the process's life)."""
    recipe = find_recipe(name)
    return {
        **recipe_summary(recipe),
        "operations": [
            {
                "name": op.name,
                "description": op.description,
                "available": recipe.unavailable is None and op.available,
            }
            for op in recipe.operations
        ],
        "payload_schema": recipe.payload_model.model_json_schema(),
        "artifact_inputs": list(recipe.artifact_inputs),
        "result_schema": recipe.result_schema,
        "examples": list(recipe.examples),
    }


@router.get("")
async def list_recipes(caller: Caller) -> dict[str, Any]:
    return {"recipes": [recipe_summary(r) for r in recipes().values()]}


@router.get("/{name}")
async def get_recipe(name: str, caller: Caller) -> dict[str, Any]:
    return recipe_detail(find_recipe(name).name)


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
