"""Prices: what one task-hour of a job costs (docs/llms-full.md, "Billing"; docs/operating.md,
"Prices").

The operator sets them in one place, ``COMPUTALOT_PRICES`` (JSON text, or the path of a JSON or
TOML file): ``{"presets": {"cpu-small": 0.05, …}, "resources": {"cpu_hour": 0.05,
"memory_gib_hour": 0.005, "gpu_hour": 1.0}}``, every entry optional and in USD per hour; what it
leaves out keeps its default (:data:`DEFAULT_RESOURCE_PRICES` and each preset's own price in
``computalot.jobs.resources.PRESETS``).

A job's price per task-hour is that of the cheapest preset covering every requirement it
states; a request no preset covers is priced per resource: cores × ``cpu_hour`` + GiB of memory
× ``memory_gib_hour`` + GPUs × ``gpu_hour``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from computalot.jobs.resources import PRESETS
from computalot.settings import Settings, check_price_table, read_price_table

#: USD per hour of one core, one GiB of memory, one GPU (requests no preset covers).
DEFAULT_RESOURCE_PRICES: Mapping[str, Decimal] = {
    "cpu_hour": Decimal("0.05"),
    "memory_gib_hour": Decimal("0.005"),
    "gpu_hour": Decimal("1.00"),
}
MIB_PER_GIB = Decimal(1024)


@dataclass(frozen=True)
class PriceTable:
    """USD per hour of each preset (by name) and of each resource."""

    presets: Mapping[str, Decimal]
    resources: Mapping[str, Decimal]

    def usd_per_hour(self, minimums: Mapping[str, Any]) -> Decimal:
        """One task-hour of a job needing ``minimums`` (``resolve_requirements``' output)."""
        covering = [
            self.presets[p.name]
            for p in PRESETS
            if all(_num(p.requirements.get(k, 0)) >= _num(v) for k, v in minimums.items() if v)
        ]
        if covering:
            return min(covering)
        cpu = _num(minimums.get("cpu", 1))
        gib = _num(minimums.get("memory_mb") or 0) / MIB_PER_GIB
        gpus = _num(minimums.get("gpu_count") or 0)
        return (
            cpu * self.resources["cpu_hour"]
            + gib * self.resources["memory_gib_hour"]
            + gpus * self.resources["gpu_hour"]
        )

    def presets_usd(self) -> dict[str, float]:
        """Each preset's price as ``GET /presets`` shows it (a JSON number)."""
        return {name: float(price) for name, price in self.presets.items()}


def _num(value: Any) -> Decimal:
    return Decimal(str(value))


@functools.lru_cache(maxsize=8)
def _table(prices: str | None) -> PriceTable:
    given = check_price_table(read_price_table(prices)) if prices else {}
    known = {p.name for p in PRESETS}
    unknown = sorted(set(given.get("presets", {})) - known)
    if unknown:
        raise ValueError(
            f"COMPUTALOT_PRICES names unknown preset(s) {unknown}; presets: {sorted(known)}"
        )
    presets = {p.name: _num(p.usd_per_hour) for p in PRESETS}
    presets.update(given.get("presets", {}))
    resources = dict(DEFAULT_RESOURCE_PRICES)
    resources.update(given.get("resources", {}))
    return PriceTable(presets, resources)


def price_table(settings: Settings | None) -> PriceTable:
    """The deployment's prices (the defaults when ``settings`` is None or sets none)."""
    return _table(settings.prices if settings is not None else None)
