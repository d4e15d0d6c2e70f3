"""Whether an attempt can be placed on the cluster's alive nodes, and what becomes of one that
cannot (docs/llms-full.md, "Timeouts, retries and cancel"; docs/operating.md, "Nodes and the
sandbox").

Ray queues a task whose resources no alive node offers and waits for one to join (an
autoscaler may add it). The dispatcher waits as long, but no longer than ``node_wait_s``: an
attempt still unplaceable after that is cancelled and fails with a typed code instead of leaving
its job ``running`` forever: ``node_lost`` when an earlier attempt of the task was lost with its
node (the node that fitted is gone), ``unsatisfiable_requirements`` when no alive node ever
fitted it. Pure functions and a small tracker, unit-tested without Ray.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

#: Ray's option names → the node resource they draw on.
_RAY_RESOURCES = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}


def wanted_resources(options: Mapping[str, Any]) -> dict[str, float]:
    """The node resources a task with these Ray ``options`` (``jobs.resources.ray_options``)
    needs, in Ray's names (``CPU``, ``GPU``, ``memory`` bytes, custom ones)."""
    wanted: dict[str, float] = {}
    for option, name in _RAY_RESOURCES.items():
        value = options.get(option)
        if value:
            wanted[name] = float(value)
    for name, amount in (options.get("resources") or {}).items():
        if amount:
            wanted[str(name)] = float(amount)
    return wanted


def fits_a_node(wanted: Mapping[str, float], nodes: list[dict[str, float]]) -> bool:
    """Whether one of ``nodes`` (each alive node's *total* resources) offers all of
    ``wanted``. An empty view (the cluster could not be read) fits everything."""
    if not nodes:
        return True
    return any(all(node.get(k, 0.0) >= v for k, v in wanted.items()) for node in nodes)


def runs_tasks(node: Mapping[str, float]) -> bool:
    """Whether a node (its total resources) runs tasks: the head offers no CPU to them
    (docs/operating.md, "Nodes and the sandbox"), so it is never warmed for a project nor
    counted among the nodes a project must be ready on."""
    return float(node.get("CPU", 0.0)) > 0


def resources_key(options: Mapping[str, Any]) -> str:
    """One key per distinct set of resources (attempts sharing it are judged once)."""
    return json.dumps(wanted_resources(options), sort_keys=True)


class PlacementWatch:
    """Since when each distinct set of resources has fitted no alive node (monotonic seconds).

    :meth:`unplaceable` is asked, each dispatcher sweep, about the resources of the attempts in
    flight; it answers those that have fitted no node for ``wait_s`` or more."""

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        self.since: dict[str, float] = {}

    def unplaceable(self, keys: set[str], nodes: list[dict[str, float]], now: float) -> set[str]:
        out: set[str] = set()
        still: dict[str, float] = {}
        for key in keys:
            if fits_a_node(json.loads(key), nodes):
                continue
            since = self.since.get(key, now)
            still[key] = since
            if now - since >= self.wait_s:
                out.add(key)
        self.since = still
        return out


def node_name(node_id: str | None) -> str | None:
    """A Ray node's public name on a task (``node-`` and 8 hex digits): stable for the node,
    the same on every task it ran, and neither its address nor Ray's node id."""
    if not node_id:
        return None
    return "node-" + hashlib.sha256(node_id.encode()).hexdigest()[:8]
