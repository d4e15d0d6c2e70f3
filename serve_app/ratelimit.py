"""Request budgets: 429 ``rate_limited`` with Retry-After (docs/llms-full.md, "Errors").

- per account, on every authenticated route (``COMPUTALOT_RATE_LIMIT_PER_MINUTE``);
- per client address, on the public routes that write (``POST /api/v1/feedback``,
  ``POST /api/v1/auth/wallet/challenge``: ``COMPUTALOT_ANON_RATE_LIMIT_PER_MINUTE``), the
  address being the real client's behind the ingress (:mod:`serve_app.client_address`).

A fixed one-minute window per key, kept by each API replica on its own: cheap, and good
enough to stop a runaway client. Every replica applies the whole budget, so with N replicas a
client that spreads its requests over them gets up to N times the budget; nothing is shared
between replicas.
"""

from __future__ import annotations

import math
import time

from fastapi import Request

from computalot.errors import RateLimited
from serve_app.client_address import client_address, ingress_token_from_env

WINDOW_S = 60.0
#: Keys kept before the expired windows are dropped.
MAX_KEYS = 10_000


class RateLimiter:
    def __init__(self, per_minute: int, what: str = "requests") -> None:
        self.per_minute = per_minute
        self.what = what
        self._windows: dict[str, tuple[float, int]] = {}

    def check(self, key: str) -> None:
        now = time.monotonic()
        start, count = self._windows.get(key, (now, 0))
        if now - start >= WINDOW_S:
            start, count = now, 0
        count += 1
        self._windows[key] = (start, count)
        if count > self.per_minute:
            retry_after = max(1, math.ceil(WINDOW_S - (now - start)))
            raise RateLimited(
                f"more than {self.per_minute} {self.what} in a minute",
                headers={"Retry-After": str(retry_after)},
            )
        if len(self._windows) > MAX_KEYS:
            self._windows = {k: v for k, v in self._windows.items() if now - v[0] < WINDOW_S}


class PublicRouteLimiter:
    """The per-address budget of the public routes, and the ingress token it trusts."""

    def __init__(self, per_minute: int, ingress_token: str | None) -> None:
        self.limiter = RateLimiter(per_minute, "requests from this address to public routes")
        self.ingress_token = ingress_token

    def check(self, request: Request) -> None:
        self.limiter.check(client_address(request, self.ingress_token))


async def public_rate_limit(request: Request) -> None:
    """Route dependency of the public routes that write: counts the request against its
    client's address before the body is read."""
    state = request.app.state
    limiter: PublicRouteLimiter | None = getattr(state, "public_rate_limiter", None)
    if limiter is None:
        limiter = PublicRouteLimiter(
            state.settings.anon_rate_limit_per_minute, ingress_token_from_env()
        )
        state.public_rate_limiter = limiter
    limiter.check(request)
