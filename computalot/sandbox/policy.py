"""What the dispatcher decides about an attempt's confinement (``AttemptSpec.sandbox``).

Made on the head from the operator's settings, the job's requirements and the revision's
manifest (:func:`policy_for`); read on the worker by :mod:`computalot.sandbox.task`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from computalot.sandbox.limits import TaskLimits, task_limits


@dataclass(frozen=True)
class SandboxPolicy:
    """What the dispatcher decided for an attempt; it travels to the worker pickled, inside
    ``engine.attempt.AttemptSpec``."""

    mode: str  # "bwrap" | "none"
    network: str  # "host" | "none"
    uid: int
    gid: int
    limits: TaskLimits
    open_ports: tuple[int, ...]  # this node's ports a host-network task may reach (the API)
    gpu: bool = False
    shared_dirs: tuple[str, ...] = ()  # host directories every task sees read-write


def open_ports(api_url: str) -> tuple[int, ...]:
    """The port of the public API, which tasks may call (``COMPUTALOT_API_URL``)."""
    try:
        parts = urlsplit(api_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return ()
    return (port,)


def api_ports(settings: Any) -> tuple[int, ...]:
    """The platform's ports a host-network task may reach: the API's, and the public URL's."""
    return tuple(sorted({settings.port, *open_ports(settings.resolved_public_url)}))


def policy_for(settings: Any, minimums: dict[str, Any], network: str) -> SandboxPolicy:
    return SandboxPolicy(
        mode=settings.sandbox,
        network=network,
        uid=settings.sandbox_uid,
        gid=settings.sandbox_gid,
        limits=task_limits(settings, minimums),
        open_ports=api_ports(settings),
        gpu=bool(minimums.get("gpu_count")),
        shared_dirs=tuple(str(d) for d in settings.sandbox_shared_dirs),
    )
