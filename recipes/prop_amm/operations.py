"""The ``prop_amm`` recipe's operations (docs/recipes.md, "prop_amm"): ``eval`` (fanned out
into ``eval_chunk`` Ray tasks), ``eval_chunk``, ``validate``, ``concavity_check`` and
``build``, each ``run_xxx(ctx, payload) -> result``.

Every operation reads the strategy (``rs_source_b64`` or the ``strategy_ref`` artifact), checks
it (:mod:`.source_check`), compiles it or takes it from the node's cache (:mod:`.build`), and
runs the compiled runner in the task sandbox (:mod:`.execute`). Simulation ``i`` of a request
uses seed ``seed_base + start + i``, the challenge's ``--seed-start`` numbering.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math
import time
from pathlib import Path
from typing import Any

from ..context import RecipeContext, RecipeFailure
from . import build as builds
from .execute import run_runner
from .recipe import PropAmmPayload
from .source_check import MAX_SOURCE_BYTES, Summary, check_source

#: Simulations per chunk below which a request is not split further.
MIN_CHUNK_SIMS = 5


def decode_inline(text: str) -> str:
    """``rs_source_b64`` as source text; ``ValueError`` saying what is wrong."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the decoded source is not UTF-8 text") from None


def load_source(ctx: RecipeContext, payload: PropAmmPayload) -> tuple[str, Summary]:
    """The strategy's checked source and what it declares; :class:`RecipeFailure` naming the
    field and the rule it breaks."""
    if payload.rs_source_b64 is not None:
        field = "rs_source_b64"
        try:
            source = decode_inline(payload.rs_source_b64)
        except ValueError as exc:
            raise RecipeFailure(f"{field}: {exc}") from None
    else:
        field = "strategy_ref"
        path = ctx.input_path(field)
        size = path.stat().st_size
        if size > MAX_SOURCE_BYTES:
            raise RecipeFailure(
                f"{field}: the source is {size} bytes; the limit is {MAX_SOURCE_BYTES}"
            )
        try:
            source = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise RecipeFailure(f"{field}: the artifact is not UTF-8 text") from None
    problems, summary = check_source(source)
    if problems:
        text = "; ".join(f"{p.item}: {p.message}" for p in problems)
        raise RecipeFailure(f"{field}: {text}")
    return source, summary


def _compiled(ctx: RecipeContext, payload: PropAmmPayload) -> tuple[builds.Build, Summary, str]:
    source, summary = load_source(ctx, payload)
    built = builds.compile_strategy(source, summary.has_after_swap, ctx.time_left())
    return built, summary, source


def _about(built: builds.Build, summary: Summary, source: str) -> dict[str, Any]:
    return {
        "name": summary.name,
        "model_used": summary.model_used,
        "source_hash": builds.source_hash(source),
        "build_key": built.key,
        "build_cached": built.cached,
        "build_seconds": round(built.seconds, 3),
        "compiler_profile": builds.compiler_profile(),
        "compiler_profile_hash": builds.profile_hash(),
    }


def eval_chunk_task(
    key: str, binary: bytes, seed_base: int, start: int, count: int, steps: int, until: float
) -> dict[str, Any]:
    """One chunk on any node (a parallel task): the runner from this node's cache or the bytes
    handed over, run in the sandbox; its seeds and edges."""
    path = builds.binary_path(key)
    if not path.is_file():
        path = builds.install_binary(key, binary)
    return run_chunk(path, seed_base, start, count, steps, until - time.time())


def run_chunk(
    binary: Path, seed_base: int, start: int, count: int, steps: int, timeout_s: float
) -> dict[str, Any]:
    args = ["eval", str(seed_base), str(start), str(count), str(steps)]
    return run_runner(binary, args, timeout_s)


def _chunks(count: int, cpus: int) -> list[tuple[int, int]]:
    """``(offset, size)`` of each chunk: about two per CPU, none under MIN_CHUNK_SIMS."""
    if cpus <= 1:
        return [(0, count)]
    n = max(1, min(2 * cpus, math.ceil(count / MIN_CHUNK_SIMS)))
    bounds = [round(count * i / n) for i in range(n + 1)]
    return [(a, b - a) for a, b in itertools.pairwise(bounds) if b > a]


def merge(parts: list[dict[str, Any]], payload: PropAmmPayload, started: float) -> dict[str, Any]:
    """The batch figures of the chunks' answers, in seed order: the total is summed one
    simulation after another, as the challenge does."""
    seeds: list[int] = []
    edges: list[float] = []
    for part in parts:
        seeds.extend(int(s) for s in part["seeds"])
        edges.extend(float(e) for e in part["edges"])
    total = 0.0
    for edge in edges:
        total += edge
    result: dict[str, Any] = {
        "operation": payload.operation,
        "seed_base": payload.seed_base,
        "start": payload.start,
        "count": payload.count,
        "steps": payload.steps,
        "n_sims": len(edges),
        "avg_edge": total / len(edges) if edges else 0.0,
        "total_edge": total,
        "seed_range": [seeds[0], seeds[-1]] if seeds else None,
        "chunks": len(parts),
        "sim_seconds": round(time.monotonic() - started, 3),
    }
    if payload.per_seed:
        result["per_seed"] = [{"seed": s, "edge": e} for s, e in zip(seeds, edges, strict=True)]
    return result


def _strict(ctx: RecipeContext, payload: PropAmmPayload, built: builds.Build) -> None:
    if not payload.strict_curves:
        return
    answer = run_runner(built.binary, ["concavity"], ctx.time_left())
    failed = [c for c in answer.get("checks", []) if not c.get("passed")]
    if failed:
        text = "; ".join(f"{c['check']}: {c['detail']}" for c in failed)
        raise RecipeFailure(f"strict_curves: the strategy's curves are not concave: {text}")


def run_eval(ctx: RecipeContext, payload: PropAmmPayload) -> dict[str, Any]:
    """``eval``: the strategy's edge over ``count`` simulations, split into ``eval_chunk``
    tasks (about two per CPU of the job) and merged."""
    built, summary, source = _compiled(ctx, payload)
    _strict(ctx, payload, built)
    started = time.monotonic()
    chunks = _chunks(payload.count, ctx.cpus)
    until = time.time() + ctx.time_left()
    if len(chunks) == 1:
        parts = [
            run_chunk(
                built.binary,
                payload.seed_base,
                payload.start,
                payload.count,
                payload.steps,
                ctx.time_left(),
            )
        ]
    else:
        shared = ctx.share(built.binary.read_bytes())
        calls = [
            (
                built.key,
                shared,
                payload.seed_base,
                payload.start + offset,
                size,
                payload.steps,
                until,
            )
            for offset, size in chunks
        ]
        parts = ctx.parallel(eval_chunk_task, calls, num_cpus=1)
    result = merge(parts, payload, started)
    result.update(_about(built, summary, source))
    ctx.progress(final=True, fraction=1.0, message=f"{result['n_sims']} simulations scored")
    return result


def run_eval_chunk(ctx: RecipeContext, payload: PropAmmPayload) -> dict[str, Any]:
    """``eval_chunk``: simulations ``start .. start + count`` in one runner process."""
    built, summary, source = _compiled(ctx, payload)
    _strict(ctx, payload, built)
    started = time.monotonic()
    part = run_chunk(
        built.binary,
        payload.seed_base,
        payload.start,
        payload.count,
        payload.steps,
        ctx.time_left(),
    )
    result = merge([part], payload, started)
    result.update(_about(built, summary, source))
    return result


def _checks(ctx: RecipeContext, payload: PropAmmPayload, command: str) -> dict[str, Any]:
    built, summary, source = _compiled(ctx, payload)
    meta = run_runner(built.binary, ["meta"], ctx.time_left())
    answer = run_runner(built.binary, [command], ctx.time_left())
    checks = [
        {
            "check": "metadata",
            "passed": bool(meta.get("name")) and bool(meta.get("model_used")),
            "detail": f"NAME {meta.get('name')!r}, MODEL_USED {meta.get('model_used')!r}",
        },
        *answer.get("checks", []),
    ]
    result: dict[str, Any] = {
        "operation": payload.operation,
        "passed": all(c["passed"] for c in checks),
        "checks": checks,
        "failed": [c["check"] for c in checks if not c["passed"]],
    }
    result.update(_about(built, summary, source))
    result["name"] = meta.get("name")
    result["model_used"] = meta.get("model_used")
    return result


def run_validate(ctx: RecipeContext, payload: PropAmmPayload) -> dict[str, Any]:
    """``validate``: the challenge's checks on the compiled strategy (docs/recipes.md)."""
    return _checks(ctx, payload, "validate")


def run_concavity_check(ctx: RecipeContext, payload: PropAmmPayload) -> dict[str, Any]:
    """``concavity_check``: monotone and concave on both sides."""
    return _checks(ctx, payload, "concavity")


def run_build(ctx: RecipeContext, payload: PropAmmPayload) -> dict[str, Any]:
    """``build``: compile the strategy and publish its native runner executable."""
    built, summary, source = _compiled(ctx, payload)
    filename = f"prop_amm_{built.key}.runner"
    target = ctx.out_dir / filename
    target.write_bytes(built.binary.read_bytes())
    target.chmod(0o755)
    result = {
        "operation": payload.operation,
        "artifact": ctx.publish(filename),
        "filename": filename,
        "bytes": target.stat().st_size,
        "usage": "RUNNER eval OUT.json SEED_BASE START COUNT STEPS | validate OUT.json | "
        "concavity OUT.json | meta OUT.json",
    }
    result.update(_about(built, summary, source))
    return result
