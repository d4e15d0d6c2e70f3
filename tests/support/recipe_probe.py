"""A probe recipe for the engine's recipe tests (``tests/integration/test_run_recipe.py``).

Registered only in the test process (``install``), run through ``engine.run_recipe`` there;
its sub-task functions are module-level so Ray workers import them by name.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from recipes import registry
from recipes.context import RecipeContext, RecipeFailure

NAME = "probe"


class ProbePayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operation: str = "fan"
    seconds: float = 0.0
    n: int = 2
    pid_dir: str | None = None


def spin(seconds: float, pid_dir: str | None) -> int:
    """Busy for ``seconds`` (a sub-task); leaves its pid in ``pid_dir`` first."""
    if pid_dir:
        Path(pid_dir, f"{os.getpid()}.pid").write_text(str(os.getpid()))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return os.getpid()


def refuse(_n: int) -> None:
    raise RecipeFailure("candidate: refused by the sub-task")


def run_fan(ctx: RecipeContext, p: ProbePayload) -> dict[str, Any]:
    pids = ctx.parallel(spin, [(p.seconds, p.pid_dir)] * p.n, num_cpus=1)
    ctx.progress(final=True, fraction=1.0, best_score=1.5)
    return {"pids": pids, "cpus": ctx.cpus}


def run_child_refuses(ctx: RecipeContext, p: ProbePayload) -> dict[str, Any]:
    ctx.parallel(refuse, [(i,) for i in range(p.n)])
    return {}


def run_refuse(ctx: RecipeContext, p: ProbePayload) -> dict[str, Any]:
    raise RecipeFailure("candidate: 44 numbers, expected 45")


def run_crash(ctx: RecipeContext, p: ProbePayload) -> dict[str, Any]:
    return {"x": 1 / 0}


def run_nan(ctx: RecipeContext, p: ProbePayload) -> dict[str, Any]:
    return {"x": float("nan")}


def run_hang(ctx: RecipeContext, p: ProbePayload) -> dict[str, Any]:
    while True:
        time.sleep(0.05)


def run_publish(ctx: RecipeContext, p: ProbePayload) -> dict[str, Any]:
    (ctx.out_dir / "best.json").write_text('{"candidate": [1, 2, 3]}')
    (ctx.out_dir / "scratch.txt").write_text("kept as an artifact too")
    return {"best_artifact": ctx.publish("best.json"), "input": ctx.input_filename("data_ref")}


OPERATIONS = ("fan", "child_refuses", "refuse", "crash", "nan", "hang", "publish")


def install() -> registry.Recipe:
    recipe = registry.Recipe(
        name=NAME,
        description="engine probe",
        payload_model=ProbePayload,
        operations=tuple(
            registry.Operation(op, op, f"{__name__}:run_{op}", fans_out=True) for op in OPERATIONS
        ),
    )
    registry.register(recipe)
    return recipe
