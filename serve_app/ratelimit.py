"""Per-account request budget: 429 ``rate_limited`` with Retry-After (docs/llms-full.md,
"Errors").

A fixed one-minute window per account, kept by each API replica on its own: cheap, and good
enough to stop a runaway client. Every replica applies the whole
``COMPUTALOT_RATE_LIMIT_PER_MINUTE``, so with N replicas an account that spreads its requests
over them gets up to N times the budget; nothing is shared between replicas.
"""

from __future__ import annotations

import math
import time

from computalot.errors import RateLimited

WINDOW_S = 60.0


class RateLimiter:
    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._windows: dict[str, tuple[float, int]] = {}

    def check(self, account_id: str) -> None:
        now = time.monotonic()
        start, count = self._windows.get(account_id, (now, 0))
        if now - start >= WINDOW_S:
            start, count = now, 0
        count += 1
        self._windows[account_id] = (start, count)
        if count > self.per_minute:
            retry_after = max(1, math.ceil(WINDOW_S - (now - start)))
            raise RateLimited(
                f"more than {self.per_minute} requests in a minute",
                headers={"Retry-After": str(retry_after)},
            )
        if len(self._windows) > 10_000:
            self._windows = {k: v for k, v in self._windows.items() if now - v[0] < WINDOW_S}
