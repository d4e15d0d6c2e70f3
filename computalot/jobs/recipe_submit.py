"""What a recipe job's submit checks (docs/recipes.md): the recipe, its payload, its inputs.

A recipe job is one task that runs the recipe's operation natively in a Ray worker
(``engine.run_recipe``); it has no project, revision, runner command or fan-out, so those
fields are refused rather than ignored. The payload is validated with the recipe's pydantic
model (422 naming ``payload.<field>``), its ``problems()`` rules next, then every ``*_ref``
input must be an artifact the account can read. An operation that is not built, or whose worker
capability (``computalot.capabilities``) no alive node declares, answers 409 ``not_available``
naming it; an accepted one asks Ray for that capability so it lands only on such a node.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.artifacts.inputs import AVAILABLE
from computalot.capabilities import task_resources
from computalot.engine.cluster import node_capabilities
from computalot.errors import NotAvailable, NotFound, ValidationFailed, field_error
from computalot.schemas.jobs import JobSubmit
from computalot.store.models import Artifact
from recipes.registry import Recipe, get_recipe, recipes

#: Job fields that belong to project jobs: a recipe provides its command and runs one task.
PROJECT_ONLY = (
    "project",
    "runner_command",
    "fan_out",
    "batch_size",
    "merge_strategy",
    "merge_key",
    "weight_field",
    "checkpointing",  # a recipe runs no command that could write COMPUTALOT_CHECKPOINT_DIR
    # the sweep / map_reduce / benchmark fields (``jobs.workflows``)
    "parameters",
    "fixed_payload",
    "rank_by",
    "split",
    "reduce",
    "candidates",
    "shared_payload",
    "replicas",
)


def find_recipe(name: str) -> Recipe:
    recipe = get_recipe(name)
    if recipe is None:
        raise NotFound(
            f"recipe {name!r} not found; recipes: {', '.join(recipes())}",
            recommended_action="list the recipes with GET /api/v1/recipes",
        )
    return recipe


def check_recipe_fields(body: JobSubmit) -> None:
    """Refuse the project-job fields a recipe job would silently ignore (422 naming one)."""
    if body.type not in (None, "structured_runner"):
        raise field_error(["type"], "recipe jobs have no type; leave it out")
    for name in PROJECT_ONLY:
        if getattr(body, name) is not None:
            raise field_error(
                [name], "does not apply to recipe jobs (the recipe provides the command)"
            )


def check_payload(recipe: Recipe, payload: dict[str, Any]) -> BaseModel:
    """The payload as the recipe's model, or a 422 naming each failing ``payload.<field>``."""
    model = recipe.payload_model
    try:
        checked = model.model_validate(payload)
    except ValidationError as exc:
        details = [
            {"loc": ["payload", *err["loc"]], "msg": err["msg"]}
            for err in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        first = details[0]
        dotted = ".".join(str(p) for p in first["loc"])
        raise ValidationFailed(
            f"{dotted}: {first['msg']}",
            details=details,
            recommended_action=f"fix the payload: GET /api/v1/recipes/{recipe.name} has its schema",
        ) from None
    problems = getattr(checked, "problems", None)
    for field, message in problems() if problems is not None else []:
        raise field_error(["payload", field], message)
    return checked


def operation_state(
    recipe: Recipe, operation: str, nodes: list[dict[str, float]] | None
) -> tuple[bool, str | None]:
    """Whether the cluster can run ``operation`` now, and why not. ``nodes``: each alive node's
    resources as last read (empty or None: not known yet, so no capability is refused; the
    dispatcher fails a task no node can take after ``node_wait_s``)."""
    op = recipe.operation(operation)
    if recipe.unavailable is not None:
        return False, recipe.unavailable
    if op.capability and nodes and op.capability not in node_capabilities(nodes):
        return False, (
            f"needs the {op.capability!r} worker capability, which no alive node of this "
            "cluster has (docs/recipes.md, Worker capabilities)"
        )
    if not op.available:
        return False, f"operation {operation!r} is not built yet"
    return True, None


def check_operation(
    recipe: Recipe, operation: str, nodes: list[dict[str, float]] | None = None
) -> None:
    """409 ``not_available`` for an operation this deployment cannot run now: one not built,
    or one whose worker capability no alive node has (``details`` name it)."""
    available, reason = operation_state(recipe, operation, nodes)
    if available:
        return
    runnable = [o.name for o in recipe.operations if operation_state(recipe, o.name, nodes)[0]]
    action = (
        f"use one of {', '.join(runnable)}, or add a worker with the capability"
        if runnable
        else "see GET /api/v1/recipes for the recipes that run here"
    )
    capability = recipe.operation(operation).capability or recipe.placement
    raise NotAvailable(
        f"recipe {recipe.name!r}, operation {operation!r}: {reason}",
        details=[
            {
                "loc": ["payload", "operation"],
                "msg": str(reason),
                "recipe": recipe.name,
                "operation": operation,
                "capability": capability,
            }
        ],
        recommended_action=action,
    )


def input_refs(recipe: Recipe, payload: BaseModel) -> list[tuple[str, str]]:
    """``(field, artifact id)`` of each ``*_ref`` input the payload names."""
    refs = []
    for name in recipe.artifact_inputs:
        value = getattr(payload, name, None)
        if isinstance(value, str) and value:
            refs.append((name, value))
    return refs


async def check_recipe_inputs(
    db: AsyncSession, account_id: str, refs: list[tuple[str, str]]
) -> dict[str, list[str]]:
    """``{field: [artifact id, filename]}`` of the inputs; 422 naming the first
    ``payload.<field>`` whose artifact the account cannot read."""
    if not refs:
        return {}
    query = select(Artifact.id, Artifact.filename).where(
        Artifact.account_id == account_id,
        Artifact.id.in_(sorted({art for _field, art in refs})),
        Artifact.state == AVAILABLE,
    )
    names = dict((await db.execute(query)).tuples().all())
    found: dict[str, list[str]] = {}
    for name, art_id in refs:
        if art_id not in names:
            raise field_error(
                ["payload", name],
                f"artifact {art_id} not found (unknown, not available, or not this account's): "
                "upload it with POST /api/v1/artifacts and use the id it returns",
            )
        found[name] = [art_id, str(names[art_id] or "")]
    return found


async def check_recipe_submit(
    db: AsyncSession,
    account_id: str,
    body: JobSubmit,
    nodes: list[dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Every recipe-specific check of a submit (``nodes``: the alive nodes' resources, for the
    operation's capability); answers what the job's spec keeps of it: ``{"recipe",
    "operation", "inputs": {field: [artifact id, filename]}, "capability"}``."""
    recipe = find_recipe(str(body.recipe))
    check_recipe_fields(body)
    payload = check_payload(recipe, body.payload)
    operation = str(getattr(payload, "operation", None) or recipe.default_operation)
    check_operation(recipe, operation, nodes)
    inputs = await check_recipe_inputs(db, account_id, input_refs(recipe, payload))
    capability = recipe.operation(operation).capability
    return {
        "recipe": recipe.name,
        "operation": operation,
        "inputs": inputs,
        "capability": capability,
    }


def with_capability(options: dict[str, Any], capability: str | None) -> dict[str, Any]:
    """Ray options that also ask for ``capability``'s share (``computalot.capabilities``), so
    the task lands only on a node that declares it."""
    wanted = task_resources(capability)
    if not wanted:
        return options
    return {**options, "resources": {**options.get("resources", {}), **wanted}}
