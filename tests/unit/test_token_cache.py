"""``serve_app.auth_cache``: entries live at most the TTL (or a wallet session's end)."""

from __future__ import annotations

import time
from datetime import timedelta

from computalot.auth.principal import Principal
from computalot.timeutil import utcnow
from serve_app.auth_cache import TTL_S, AuthCache


def principal(credential_id: str = "key_1", credential: str = "flk") -> Principal:
    return Principal("acct_1", "member", "n", credential, credential_id)


def test_the_ttl_is_under_a_second() -> None:
    assert 0 < TTL_S < 1.0


def test_an_entry_is_served_until_its_ttl_then_dropped() -> None:
    cache = AuthCache(ttl_s=0.05)
    cache.put("h", principal())
    assert cache.get("h") == principal()
    time.sleep(0.06)
    assert cache.get("h") is None
    assert cache.get("other") is None


def test_a_wallet_session_is_kept_no_longer_than_it_lasts() -> None:
    cache = AuthCache(ttl_s=10.0)
    cache.put("ended", principal(credential="fls"), expires_at=utcnow() - timedelta(seconds=1))
    assert cache.get("ended") is None
    cache.put("short", principal(credential="fls"), expires_at=utcnow() + timedelta(seconds=0.05))
    assert cache.get("short") is not None
    time.sleep(0.06)
    assert cache.get("short") is None


def test_forget_credential_drops_only_that_credential() -> None:
    cache = AuthCache()
    cache.put("a", principal("key_a"))
    cache.put("b", principal("key_b"))
    cache.forget_credential("key_a")
    assert cache.get("a") is None
    assert cache.get("b") == principal("key_b")


def test_a_full_cache_stays_bounded() -> None:
    cache = AuthCache(max_entries=3)
    for n in range(10):
        cache.put(str(n), principal(str(n)))
        assert len(cache._entries) <= 3
    assert cache.get("9") is not None


def test_a_zero_ttl_caches_nothing() -> None:
    cache = AuthCache(ttl_s=0)
    cache.put("h", principal())
    assert cache.get("h") is None
