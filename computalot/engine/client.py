"""How the API talks to the engine: actor handles looked up by name, calls with timeouts."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import ray

from computalot.engine.names import DISPATCHER_NAME, HUB_NAME
from computalot.errors import NotReady

log = logging.getLogger("computalot.engine")

NODES_CACHE_S = 10.0
#: ``/ready`` says the dispatcher is stalled when no cycle completed for this long (seconds); an
#: idle dispatcher completes one every ``dispatch_interval_s`` plus at most a 1 s batch window.
DISPATCHER_STALL_S = 20.0


def _why(exc: BaseException) -> str:
    if isinstance(exc, NotReady):
        return exc.message
    return type(exc).__name__


class EngineClient:
    """Used inside Serve replicas (and tests); every method fails fast with 503 when down."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._dispatcher: Any = None
        self._hub: Any = None
        self._nodes: tuple[float, list[dict[str, float]]] = (0.0, [])

    def _actor(self, name: str) -> Any:
        try:
            return ray.get_actor(name, namespace=self.namespace)
        except ValueError:
            raise NotReady(f"engine actor {name} is not running") from None

    @property
    def dispatcher(self) -> Any:
        if self._dispatcher is None:
            self._dispatcher = self._actor(DISPATCHER_NAME)
        return self._dispatcher

    @property
    def hub(self) -> Any:
        if self._hub is None:
            self._hub = self._actor(HUB_NAME)
        return self._hub

    async def _call(self, method: Any, *args: Any, timeout_s: float = 10.0) -> Any:
        try:
            return await asyncio.wait_for(method.remote(*args), timeout_s)
        except (TimeoutError, ray.exceptions.RayError) as exc:
            self._dispatcher = self._hub = None
            raise NotReady(f"engine did not answer: {type(exc).__name__}") from None

    async def health(self, timeout_s: float = 3.0) -> dict[str, str]:
        """``{"dispatcher": …, "event_hub": …}``: ``"ok"`` or why that part is not."""
        parts = {"dispatcher": self.dispatcher_health, "event_hub": self.hub_health}
        answers = await asyncio.gather(
            *(check(timeout_s) for check in parts.values()), return_exceptions=True
        )
        return {
            name: answer if isinstance(answer, str) else f"unavailable: {_why(answer)}"
            for name, answer in zip(parts, answers, strict=True)
        }

    async def dispatcher_health(self, timeout_s: float) -> str:
        info = await self._call(self.dispatcher.ping, timeout_s=timeout_s)
        age = float(info.get("cycle_age_s") or 0.0)
        if age > DISPATCHER_STALL_S:
            error = info.get("last_error")
            return f"stalled: no completed cycle for {age:.0f} s" + (
                f" (last error: {error})" if error else ""
            )
        return "ok"

    async def hub_health(self, timeout_s: float) -> str:
        info = await self._call(self.hub.ping, timeout_s=timeout_s)
        return info if isinstance(info, str) else str(info.get("status", "ok"))

    def kick(self, blocked: bool = False) -> None:
        """New queued work (fire-and-forget); a lost kick delays it to the next cycle."""
        try:
            self.dispatcher.kick.remote(blocked)
        except Exception as exc:
            self._dispatcher = None
            log.warning(
                "could not kick the dispatcher (%s); it finds new work on its own", _why(exc)
            )

    def announce(self, job_id: str) -> None:
        """Events of ``job_id`` were committed outside the engine (e.g. its planning ended):
        wake its streams now rather than at their next idle read (fire-and-forget)."""
        try:
            self.hub.written.remote({job_id: 1}, [])
        except Exception as exc:
            self._hub = None
            log.warning(
                "could not tell the event hub about job %s (%s); its streams see it at their "
                "next read",
                job_id,
                _why(exc),
            )

    def cancel(self, job_id: str) -> None:
        """Job ``job_id`` was cancelled in the store (``engine.cancelling.cancel_job``): the
        dispatcher stops its running attempts (fire-and-forget; its sweep finds them anyway)."""
        try:
            self.dispatcher.cancel.remote(job_id)
        except Exception as exc:
            self._dispatcher = None
            log.warning(
                "could not tell the dispatcher job %s was cancelled (%s); its next sweep will",
                job_id,
                _why(exc),
            )

    async def nodes(self) -> list[dict[str, float]]:
        at, cached = self._nodes
        if time.monotonic() - at < NODES_CACHE_S and cached:
            return cached
        try:
            nodes = await self._call(self.dispatcher.nodes, timeout_s=3.0)
        except NotReady:
            return cached
        self._nodes = (time.monotonic(), nodes)
        return list(nodes)

    async def wait_any_event(
        self, epoch: str | None, version: int, timeout_s: float
    ) -> tuple[str, int, list[str] | None] | None:
        """The hub's :meth:`~computalot.engine.hub.EventHub.wait_any` (a replica's feed keeps one
        call outstanding); None if the hub is unreachable."""
        try:
            result: tuple[str, int, list[str] | None] = await self._call(
                self.hub.wait_any, epoch, version, timeout_s, timeout_s=timeout_s + 5.0
            )
            return result
        except NotReady:
            return None
