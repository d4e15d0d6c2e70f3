"""What the dispatcher knows of the cluster: its alive nodes, their CPUs and worker
capabilities, and the launch bound.

Capacity follows the cluster: nodes that join (``ray up`` starts workers after the head, an
autoscaler adds more) raise the in-flight target, nodes that leave lower it. The nodes are
re-read every CLUSTER_REFRESH_S, on a thread (a GCS round trip).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import ray

from computalot.capabilities import CAPABILITIES, cluster_has

log = logging.getLogger("computalot.dispatcher")

CLUSTER_REFRESH_S = 5.0

#: The custom resource that marks the head node (cluster.yaml; docs/operating.md, "Nodes and
#: the sandbox"): the API, the dispatcher and the event hub run there, user tasks never do.
HEAD_RESOURCE = "computalot_head"
#: What each of those actors asks of it: a sliver, so any number of them fit on the head.
HEAD_SHARE = 0.001


def alive_nodes() -> list[dict[str, float]]:
    """Total resources of each alive Ray node (blocking: a GCS call)."""
    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


def node_capabilities(nodes: list[dict[str, float]]) -> set[str]:
    """The worker capabilities (``computalot.capabilities``) some alive node declares, read
    from the nodes' resources as last refreshed (the dispatcher's view, cached by the API's
    engine client: no GCS call per request)."""
    return {name for name in CAPABILITIES if cluster_has(name, nodes)}


def head_placement(nodes: list[dict[str, float]] | None = None) -> dict[str, dict[str, float]]:
    """Ray options that pin an engine actor or API replica to the head node: a share of
    :data:`HEAD_RESOURCE` when an alive node declares it, else nothing (a single-node
    ``computalot up`` schedules as Ray likes). ``nodes``: each alive node's resources (read
    from Ray when None; blocking)."""
    nodes = alive_nodes() if nodes is None else nodes
    if any(node.get(HEAD_RESOURCE, 0.0) >= HEAD_SHARE for node in nodes):
        return {"resources": {HEAD_RESOURCE: HEAD_SHARE}}
    return {}


class ClusterView:
    """The alive nodes as of the last refresh, their CPUs, and ``max_inflight``: the hard bound
    on launched Ray tasks (``max_inflight_tasks`` when the operator set one, else 4 per CPU plus
    32); how many are kept in flight below it follows the completion rate
    (``scheduling.inflight_target``)."""

    def __init__(self, max_inflight_tasks: int | None, nodes: list[dict[str, float]]) -> None:
        self.max_inflight_tasks = max_inflight_tasks
        self.nodes: list[dict[str, float]] = []
        self.cpus = 1
        self.max_inflight = 1
        self.apply(nodes)

    def apply(self, nodes: list[dict[str, float]]) -> bool:
        """Take ``nodes`` as the cluster; True when its CPU count changed."""
        before = self.cpus
        self.nodes = nodes
        self.cpus = max(1, int(sum(n.get("CPU", 0.0) for n in nodes)))
        self.max_inflight = self.max_inflight_tasks or 4 * self.cpus + 32
        return self.cpus != before

    async def follow(self, on_new_slots: Callable[[], None]) -> None:
        """Re-read the nodes forever; ``on_new_slots`` runs when the CPU count changed."""
        while True:
            await asyncio.sleep(CLUSTER_REFRESH_S)
            try:
                nodes = await asyncio.to_thread(alive_nodes)
            except Exception as exc:
                log.warning("could not read the cluster's nodes: %s", exc)
                continue
            if nodes == self.nodes:
                continue
            before = self.cpus
            if self.apply(nodes):
                log.info("cluster CPUs %d -> %d", before, self.cpus)
                on_new_slots()
