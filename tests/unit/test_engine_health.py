"""How ``/ready`` reads the engine's parts (``EngineClient.health``): a dispatcher that answers
but has not completed a cycle for DISPATCHER_STALL_S is stalled, a hub that reports itself stuck
is named, one that does not answer is unavailable."""

from __future__ import annotations

import asyncio
from typing import Any

from computalot.engine.client import DISPATCHER_STALL_S, EngineClient


class Method:
    """Stands in for an actor method handle: ``.remote()`` gives an awaitable answer."""

    def __init__(self, answer: Any = None, hang: bool = False) -> None:
        self.answer = answer
        self.hang = hang

    def remote(self, *_args: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self.hang:
            future.set_result(self.answer)
        return future


class Actor:
    def __init__(self, ping: Method) -> None:
        self.ping = ping


def client(dispatcher: Method, hub: Method) -> EngineClient:
    engine = EngineClient("test")
    engine._dispatcher, engine._hub = Actor(dispatcher), Actor(hub)
    return engine


async def test_all_parts_ok() -> None:
    engine = client(Method({"cycle_age_s": 0.4}), Method({"status": "ok", "pending": 0}))
    assert await engine.health(1.0) == {"dispatcher": "ok", "event_hub": "ok"}


async def test_a_dispatcher_without_a_recent_cycle_is_stalled_with_its_last_error() -> None:
    info = {"cycle_age_s": DISPATCHER_STALL_S + 5, "last_error": "OperationalError: disk I/O"}
    engine = client(Method(info), Method({"status": "ok"}))
    health = await engine.health(1.0)
    assert health["dispatcher"].startswith("stalled: no completed cycle for 25 s")
    assert "disk I/O" in health["dispatcher"] and health["event_hub"] == "ok"


async def test_a_stuck_or_silent_hub_is_named() -> None:
    stuck = {"status": "stuck: no live event stored for 31 s (OSError: disk full)"}
    health = await client(Method({"cycle_age_s": 0.1}), Method(stuck)).health(1.0)
    assert health == {"dispatcher": "ok", "event_hub": stuck["status"]}
    silent = await client(Method({"cycle_age_s": 0.1}), Method(hang=True)).health(0.2)
    assert silent["event_hub"] == "unavailable: engine did not answer: TimeoutError"
