"""The one place recipes are registered (docs/recipes.md).

Each recipe package has a light ``recipe.py`` (no NumPy/SciPy/LightGBM at import: the API
process reads it) defining a :class:`Recipe`: its payload model, operations, ``*_ref`` inputs,
result schema and examples. An operation names its function as ``"module:function"``; only the
Ray worker that runs the job imports it. An operation or recipe without a function is listed
with its schema but refuses jobs (``not_available``). An operation that needs a tool outside
Python names its worker ``capability`` (``computalot.capabilities``): its jobs are refused while
no alive node declares it, and its tasks are placed only on nodes that do.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

#: The recipe packages, in catalog order.
RECIPE_MODULES = (
    "recipes.prop_amm.recipe",
    "recipes.packing.recipe",
    "recipes.lightgbm_train.recipe",
    "recipes.echidna.recipe",
)


@dataclass(frozen=True)
class Operation:
    """One operation of a recipe. ``target``: ``"package.module:function"`` taking
    ``(ctx: RecipeContext, payload: <the recipe's model>)`` and answering the result dict;
    None while it is not built. ``fans_out``: it starts more Ray tasks (its job's CPUs are
    shared by them). ``capability``: the worker capability its tasks need (``rustc``, ``sbf``,
    ``echidna``; None: any node)."""

    name: str
    description: str
    target: str | None = None
    fans_out: bool = False
    capability: str | None = None

    @property
    def available(self) -> bool:
        return self.target is not None

    def load(self) -> Callable[..., dict[str, Any]]:
        if self.target is None:
            raise LookupError(f"operation {self.name} is not built")
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Recipe:
    """A sealed recipe. ``payload_model`` has an ``operation`` field (default: the first
    operation); a model may define ``problems() -> list[tuple[field, message]]`` for rules that
    span fields (each becomes a 422 naming its field). ``placement``: where its tasks run
    (``cpu``, ``gpu``, or the worker capability of its main operations; each operation's own
    ``capability`` is what places and refuses its jobs). ``unavailable``: why jobs are refused (None
    when every built operation runs)."""

    name: str
    description: str
    payload_model: type[BaseModel]
    operations: tuple[Operation, ...]
    artifact_inputs: tuple[str, ...] = ()
    result_schema: dict[str, Any] = field(default_factory=dict)
    examples: tuple[dict[str, Any], ...] = ()
    placement: str = "cpu"
    unavailable: str | None = None

    def operation(self, name: str) -> Operation:
        for op in self.operations:
            if op.name == name:
                return op
        raise KeyError(name)

    @property
    def default_operation(self) -> str:
        return self.operations[0].name


_LOADED: dict[str, Recipe] = {}
_CATALOG: dict[str, Recipe] = {}


def recipes() -> dict[str, Recipe]:
    """Every registered recipe by name, in catalog order (imported once), then any
    :func:`register`-ed one."""
    if not _CATALOG:
        for module in RECIPE_MODULES:
            recipe: Recipe = importlib.import_module(module).RECIPE
            _CATALOG[recipe.name] = recipe
        _CATALOG.update(_LOADED)
    return _CATALOG


def register(recipe: Recipe) -> None:
    """Add a recipe in this process only (tests register probes this way)."""
    _LOADED[recipe.name] = recipe
    if _CATALOG:
        _CATALOG[recipe.name] = recipe


def get_recipe(name: str) -> Recipe | None:
    if name in _LOADED:
        return _LOADED[name]
    return recipes().get(name)
