"""The per-account request budget (docs/llms-full.md, "Errors": 429 ``rate_limited`` with ``Retry-After``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from computalot.errors import RateLimited
from serve_app import ratelimit
from serve_app.errors import error_response
from serve_app.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(ratelimit.time, "monotonic", fake)
    return fake


def test_fourth_request_in_a_minute_is_limited(clock: Clock) -> None:
    limiter = RateLimiter(per_minute=3)
    for _ in range(3):
        limiter.check("acct_a")
    clock.now += 10
    with pytest.raises(RateLimited) as caught:
        limiter.check("acct_a")
    exc = caught.value
    assert exc.status == 429 and exc.code == "rate_limited"
    assert exc.headers["Retry-After"] == "50"  # the window opened 10 s ago
    assert "3" in exc.message
    assert exc.to_dict()["error"]["recommended_action"]


def test_retry_after_is_a_whole_number_of_at_least_one_second(clock: Clock) -> None:
    limiter = RateLimiter(per_minute=1)
    limiter.check("acct_a")
    clock.now += 59.9
    with pytest.raises(RateLimited) as caught:
        limiter.check("acct_a")
    assert caught.value.headers["Retry-After"] == "1"


def test_budgets_are_per_account(clock: Clock) -> None:
    limiter = RateLimiter(per_minute=2)
    limiter.check("acct_a")
    limiter.check("acct_a")
    with pytest.raises(RateLimited):
        limiter.check("acct_a")
    limiter.check("acct_b")
    limiter.check("acct_b")
    with pytest.raises(RateLimited):
        limiter.check("acct_b")


def test_the_window_resets_after_a_minute(clock: Clock) -> None:
    limiter = RateLimiter(per_minute=3)
    for _ in range(3):
        limiter.check("acct_a")
    with pytest.raises(RateLimited):
        limiter.check("acct_a")
    clock.now += ratelimit.WINDOW_S
    for _ in range(3):
        limiter.check("acct_a")
    with pytest.raises(RateLimited):
        limiter.check("acct_a")


def test_stale_windows_are_pruned(clock: Clock) -> None:
    limiter = RateLimiter(per_minute=5)
    for i in range(10_001):
        limiter.check(f"acct_{i}")
    clock.now += ratelimit.WINDOW_S + 1
    limiter.check("acct_fresh")
    assert len(limiter._windows) <= 2


def test_the_http_answer_carries_the_envelope_and_retry_after(clock: Clock) -> None:
    limiter = RateLimiter(per_minute=1)
    limiter.check("acct_a")
    with pytest.raises(RateLimited) as caught:
        limiter.check("acct_a")
    response = error_response(caught.value)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "60"
    assert b'"code":"rate_limited"' in response.body


async def test_the_api_answers_429_with_retry_after(tmp_path: Path) -> None:
    """The limiter is wired in: a token's third call in a minute is refused (in-process ASGI)."""
    from computalot.settings import load_settings
    from computalot.store import accounts
    from computalot.store.db import Store
    from computalot.store.migrate import upgrade
    from serve_app.app import create_app

    settings = load_settings(data_dir=tmp_path, rate_limit_per_minute=2)
    store = Store(settings.resolved_database_url)
    try:
        await upgrade(store.engine)
        async with store.sessions() as db:
            account = await accounts.create_account(db, name="busy", role="member")
            _key, token = await accounts.create_key(db, account.id)
            await db.commit()
        app = create_app(settings, store=store)
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answers: list[Any] = [
                await client.get("/api/v1/account", headers=headers) for _ in range(3)
            ]
            assert [a.status_code for a in answers] == [200, 200, 429]
            limited = answers[2]
            assert limited.json()["error"]["code"] == "rate_limited"
            assert 1 <= int(limited.headers["retry-after"]) <= 60
            # Public routes carry no account and are not counted against it.
            assert (await client.get("/health")).status_code == 200
    finally:
        await store.close()
