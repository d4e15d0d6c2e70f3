"""Resource presets and the mapping from ``requirements`` to Ray scheduling options.

``requirements`` are minimums (docs/llms-full.md, "Common job fields"). They become Ray's ``num_cpus``, ``memory`` (bytes),
``num_gpus`` and custom resources; a request that no node of the cluster could ever satisfy is
refused at submit time instead of queueing forever.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from computalot.errors import UnsatisfiableRequirements, field_error
from computalot.schemas.jobs import Requirements

MiB = 1024 * 1024


@dataclass(frozen=True)
class Preset:
    """A named set of minimums; ``usd_per_hour`` is its default price (an operator's
    ``COMPUTALOT_PRICES`` may change it: ``computalot.billing.prices``)."""

    name: str
    requirements: dict[str, Any]
    usd_per_hour: float
    description: str


PRESETS: tuple[Preset, ...] = (
    Preset("cpu-small", {"cpu": 1, "memory_mb": 2048}, 0.05, "one core, 2 GiB: most runners"),
    Preset("cpu-medium", {"cpu": 2, "memory_mb": 4096}, 0.10, "two cores, 4 GiB"),
    Preset("cpu-large", {"cpu": 8, "memory_mb": 16384}, 0.40, "eight cores, 16 GiB"),
    Preset("memory-large", {"cpu": 4, "memory_mb": 65536}, 0.60, "four cores, 64 GiB"),
    Preset(
        "gpu-small",
        {"cpu": 4, "memory_mb": 16384, "gpu_count": 1, "gpu_memory_mb": 16000},
        1.20,
        "one GPU with at least 16 GB",
    ),
    Preset(
        "gpu-large",
        {"cpu": 8, "memory_mb": 65536, "gpu_count": 1, "gpu_memory_mb": 80000},
        3.00,
        "one GPU with at least 80 GB",
    ),
)
PRESETS_BY_NAME = {p.name: p for p in PRESETS}
DEFAULT_CPU_PRESET = "cpu-small"


def presets_out(usd_per_hour: Mapping[str, float] | None = None) -> dict[str, Any]:
    """``GET /presets``; ``usd_per_hour`` holds the deployment's prices by preset name
    (``computalot.billing.prices``), each preset's default price where it names none."""
    prices = usd_per_hour or {}
    return {
        "presets": [
            {
                "name": p.name,
                "requirements": p.requirements,
                "usd_per_hour": prices.get(p.name, p.usd_per_hour),
                "description": p.description,
            }
            for p in PRESETS
        ]
    }


def resolve_requirements(req: Requirements | None) -> dict[str, Any]:
    """Merge a ``profile`` preset under explicit fields; return plain minimums."""
    if req is None:
        return {"cpu": 1.0}
    merged: dict[str, Any] = {}
    if req.profile is not None:
        preset = PRESETS_BY_NAME.get(req.profile)
        if preset is None:
            names = ", ".join(PRESETS_BY_NAME)
            raise field_error(["requirements", "profile"], f"unknown preset; use one of {names}")
        merged.update(preset.requirements)
    for key, value in req.model_dump(exclude={"profile"}, exclude_none=True).items():
        merged[key] = value
    merged.setdefault("cpu", 1.0)
    return merged


def ray_options(minimums: dict[str, Any]) -> dict[str, Any]:
    """Ray ``.options(...)`` for one task attempt."""
    options: dict[str, Any] = {"num_cpus": float(minimums.get("cpu", 1.0))}
    if minimums.get("memory_mb"):
        options["memory"] = int(minimums["memory_mb"]) * MiB
    if minimums.get("gpu_count"):
        options["num_gpus"] = float(minimums["gpu_count"])
    custom: dict[str, float] = {}
    if minimums.get("gpu_memory_mb"):
        custom["gpu_memory_mb"] = float(minimums["gpu_memory_mb"])
    if minimums.get("storage_gb"):
        custom["storage_gb"] = float(minimums["storage_gb"])
    if custom:
        options["resources"] = custom
    return options


_RAY_NAMES = {"num_cpus": "CPU", "memory": "memory", "num_gpus": "GPU"}
_USER_NAMES = {"CPU": "cpu", "memory": "memory_mb", "GPU": "gpu_count"}


def check_satisfiable(options: dict[str, Any], nodes: list[dict[str, float]]) -> None:
    """Raise 422 ``unsatisfiable_requirements`` unless one node could run the task.

    ``nodes`` holds each alive node's *total* resources (Ray names: CPU, GPU, memory, custom).
    """
    if not nodes:
        return  # cluster view unavailable: accept, the dispatcher will wait for capacity
    wanted: dict[str, float] = {}
    for key, ray_name in _RAY_NAMES.items():
        if options.get(key):
            wanted[ray_name] = float(options[key])
    for name, amount in options.get("resources", {}).items():
        wanted[name] = float(amount)
    if any(all(node.get(k, 0.0) >= v for k, v in wanted.items()) for node in nodes):
        return
    worst = max(wanted, key=lambda k: wanted[k] / max(max(n.get(k, 0.0) for n in nodes), 1e-9))
    best = max(n.get(worst, 0.0) for n in nodes)
    field = _USER_NAMES.get(worst, worst)
    shown_want = wanted[worst] / MiB if worst == "memory" else wanted[worst]
    shown_best = best / MiB if worst == "memory" else best
    raise UnsatisfiableRequirements(
        f"no node can satisfy {field}={shown_want:g} (largest node offers {shown_best:g})",
        details=[{"loc": ["requirements", field], "msg": f"largest node offers {shown_best:g}"}],
    )
