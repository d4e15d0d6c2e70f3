"""A source's side of the metrics board: push its registry every few seconds, exchange on a
scrape (docs/metrics.md, "How replicas add up")."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import ray

from computalot.metrics.board import board_handle
from computalot.metrics.snapshot import Snapshot

log = logging.getLogger("computalot.metrics")

#: Seconds a push or an exchange may take before the board is judged unreachable.
CALL_TIMEOUT_S = 5.0
#: Seconds between pushes of a source whose figures did not visibly change (gauges and
#: statements move without a request): well inside the board's ``LIVE_S``.
KEEPALIVE_S = 4.0
_FAILED = object()


class Reporter:
    """Pushes ``take()`` to the board as ``source_id`` every ``interval_s`` seconds when
    ``version()`` moved (a count of what the source observed: taking a snapshot of a few
    thousand series costs milliseconds, an idle source need not pay it every second), and
    every ``KEEPALIVE_S`` regardless."""

    def __init__(
        self,
        source_id: str,
        kind: str,
        take: Callable[[], Snapshot],
        namespace: str,
        interval_s: float,
        version: Callable[[], int] = lambda: 0,
    ) -> None:
        self.source_id = source_id
        self.kind = kind
        self.take = take
        self.namespace = namespace
        self.interval_s = interval_s
        self.version = version
        self._board: Any = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start pushing (once; only where Ray runs: a bare app has no board)."""
        if self._task is None and ray.is_initialized():
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _loop(self) -> None:
        pushed: tuple[int | None, float] = (None, float("-inf"))
        while True:
            version, now = self.version(), time.monotonic()
            due = version != pushed[0] or now - pushed[1] >= KEEPALIVE_S
            if due and await self._call("push") is not _FAILED:
                pushed = (version, now)
            await asyncio.sleep(self.interval_s)

    async def exchange(self) -> Snapshot | None:
        """This source's figures now pushed, and the board's merge of all sources back;
        ``None`` when the board cannot be reached (the caller answers for itself)."""
        if self._task is None:  # not reporting (no Ray, or not a replica of the platform)
            return None
        answer = await self._call("exchange")
        return answer if isinstance(answer, dict) else None

    async def _call(self, method: str) -> Any:
        try:
            if self._board is None:
                self._board = await asyncio.to_thread(board_handle, self.namespace)
            call = getattr(self._board, method).remote(self.source_id, self.kind, self.take())
            return await asyncio.wait_for(call, CALL_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the board is down or restarting: try again next time
            self._board = None
            log.warning("metrics board not reachable (%s)", type(exc).__name__)
            return _FAILED
