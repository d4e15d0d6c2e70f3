"""Token verification cached per replica, for at most :data:`TTL_S` (issue #18 §3).

Every authenticated request used to look its token up in the store (a join of the credential
and its account) before doing its own work: on ``GET /account`` that lookup was about half of
the replica's time (bench/README.md, "API throughput"). A client sends the same token many
times a second, so each replica keeps what a token proved (its :class:`Principal`) for
:data:`TTL_S` seconds, keyed by the token's sha256 (the plain token is never kept).

Why a plain time-to-live and no invalidation message: a replica cannot hear about a revocation
made elsewhere (the admin CLI, another replica) without a read, and a read per request is what
this cache saves. An entry is never older than :data:`TTL_S` (below one second), so a revoked
key, a changed role, a deleted account or an expired wallet session
stops working on every replica within a second (docs/llms-full.md, "Auth"); the replica that
revoked a key through the API forgets it at once. Task tokens (``flt_``) are never cached:
the routes that take one are not the hot reads, and a task's end must end its token. Only
successes are kept: a refused token is looked up again each time, so a key issued a moment ago
works at once.
"""

from __future__ import annotations

import time
from datetime import datetime

from computalot.auth.principal import Principal
from computalot.timeutil import utcnow

#: How long a replica trusts what a token proved: revocation is seen within this (plus one
#: store read) on every replica.
TTL_S = 0.5
#: Tokens remembered per replica; past this the expired entries are dropped, then all.
MAX_ENTRIES = 10_000


class AuthCache:
    """``sha256(token) -> (Principal, monotonic deadline)``, for one replica."""

    def __init__(self, ttl_s: float = TTL_S, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[Principal, float]] = {}

    def get(self, digest: str) -> Principal | None:
        found = self._entries.get(digest)
        if found is None:
            return None
        principal, deadline = found
        if time.monotonic() >= deadline:
            self._entries.pop(digest, None)
            return None
        return principal

    def put(self, digest: str, principal: Principal, *, expires_at: datetime | None = None) -> None:
        """Remember ``principal`` for ``ttl_s``, or until ``expires_at`` (a wallet session's
        end) when that comes first."""
        if self.ttl_s <= 0:
            return
        now = time.monotonic()
        life = self.ttl_s
        if expires_at is not None:
            life = min(life, (expires_at - utcnow()).total_seconds())
            if life <= 0:
                return
        if len(self._entries) >= self.max_entries:
            self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[digest] = (principal, now + life)

    def forget_credential(self, credential_id: str) -> None:
        """Drop what this credential proved (a key revoked through this replica is refused by
        it at once; the other replicas see it within :data:`TTL_S`)."""
        self._entries = {
            k: v for k, v in self._entries.items() if v[0].credential_id != credential_id
        }

    def clear(self) -> None:
        self._entries.clear()
