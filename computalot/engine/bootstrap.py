"""Start (or find) the engine's detached actors: the event hub and the dispatcher."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import ray

from computalot.engine.cluster import head_placement
from computalot.engine.dispatcher import DispatcherActor, dispatcher_actor_options
from computalot.engine.hub import EventHubActor, hub_actor_options
from computalot.engine.names import DISPATCHER_NAME, HUB_NAME
from computalot.settings import Secrets


def start_engine(
    namespace: str, env_vars: dict[str, str], secrets: Secrets, *, timeout_s: float = 60.0
) -> dict[str, Any]:
    """Create the actors if missing and wait until the dispatcher has reconciled the store.

    ``env_vars`` holds no secret: the database URL and the metrics token reach the actors as
    their constructor argument (Ray keeps it to restart them), never in their environment.
    On a cluster whose head declares ``computalot_head`` both actors are pinned there
    (``engine.cluster.head_placement``)."""
    runtime_env = {"env_vars": env_vars}
    on_head = head_placement()
    hub: Any = EventHubActor.options(
        **hub_actor_options(namespace), **on_head, runtime_env=runtime_env
    ).remote(secrets)
    ray.get(hub.ping.remote(), timeout=timeout_s)
    dispatcher: Any = DispatcherActor.options(
        **dispatcher_actor_options(namespace), **on_head, runtime_env=runtime_env
    ).remote(secrets)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            info: dict[str, Any] = ray.get(dispatcher.ping.remote(), timeout=timeout_s)
            return info
        except ray.exceptions.RayTaskError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def stop_engine(namespace: str) -> None:
    for name in (DISPATCHER_NAME, HUB_NAME):
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
