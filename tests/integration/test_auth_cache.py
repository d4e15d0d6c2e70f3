"""Token verification is cached per replica, and a change made behind its back still takes
effect within a second (issue #18 §3, ``serve_app.auth_cache``).

Each change here is written straight into the store, the way the admin CLI or another replica
writes it, so the replica that answers hears nothing of it but what it reads. The test polls
for at most 2 s: the cache keeps an entry at most half a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, update

from computalot.store.models import Account, ApiKey
from tests.support.helpers import assert_envelope

API = "/api/v1"
#: The promise is one second; the poll allows twice that for a loaded test host.
POLL_S = 2.0


@pytest.fixture(scope="module")
def db(platform: Any) -> Iterator[Engine]:
    """The platform's store, written from the test (not through the API replica)."""
    url = platform.settings.resolved_database_url.replace("sqlite+aiosqlite://", "sqlite://")
    engine = create_engine(url, connect_args={"timeout": 30})
    yield engine
    engine.dispose()


def first_change(probe: Callable[[], httpx.Response], status: int) -> tuple[float, httpx.Response]:
    """Call ``probe`` until it answers ``status`` (at most :data:`POLL_S`); seconds taken."""
    start = time.monotonic()
    while True:
        answer = probe()
        if answer.status_code == status:
            return time.monotonic() - start, answer
        assert time.monotonic() - start < POLL_S, f"still {answer.status_code}: {answer.text}"
        time.sleep(0.02)


def _key_id(admin: httpx.Client, account_id: str) -> str:
    keys = admin.get(f"{API}/admin/accounts/{account_id}/keys").json()["keys"]
    return str(next(k["id"] for k in keys if k["name"] == "initial"))


def test_a_key_revoked_in_the_store_is_refused_within_a_second(
    admin: httpx.Client, new_account: Callable[..., httpx.Client], db: Engine
) -> None:
    client = new_account("member")
    for _ in range(20):  # warm: the replica now holds this key in its cache
        assert client.get(f"{API}/account").status_code == 200
    key_id = _key_id(admin, client.account["id"])
    with db.begin() as conn:
        conn.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=datetime.now(UTC)))
    took, answer = first_change(lambda: client.get(f"{API}/jobs/job_nope"), 401)
    assert "revoked" in assert_envelope(answer, 401, "unauthorized")["message"]
    assert took < POLL_S
    # And it stays refused, on every hot read.
    for path in ("/account", "/jobs", "/jobs/job_nope", "/jobs/job_nope/tasks", "/results/x"):
        assert_envelope(client.get(f"{API}{path}"), 401, "unauthorized")


def test_a_role_changed_in_the_store_applies_within_a_second(
    new_account: Callable[..., httpx.Client], db: Engine
) -> None:
    client = new_account("member")
    rotate = f"{API}/account/callback_secret/rotate"
    assert client.post(rotate).status_code == 200
    with db.begin() as conn:
        conn.execute(
            update(Account).where(Account.id == client.account["id"]).values(role="viewer")
        )
    first_change(lambda: client.post(rotate), 403)
    assert client.get(f"{API}/account").json()["role"] == "viewer"


def test_an_account_read_is_never_stale(new_account: Callable[..., httpx.Client]) -> None:
    """The cache holds who the caller is, not the answer: a rotated secret shows at once."""
    client = new_account("member")
    for _ in range(5):
        rotated = client.post(f"{API}/account/callback_secret/rotate").json()["callback_secret"]
        assert client.get(f"{API}/account").json()["callback_secret"] == rotated


def test_a_key_revoked_through_the_api_is_refused_at_once(
    admin: httpx.Client, new_account: Callable[..., httpx.Client]
) -> None:
    """The replica that revokes forgets the key at once; a new key works on first use."""
    client = new_account("member")
    second = admin.post(f"{API}/admin/accounts/{client.account['id']}/keys", json={"name": "two"})
    token = second.json()["key"]["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get(f"{API}/account", headers=headers).status_code == 200
    admin.post(f"{API}/admin/keys/{second.json()['key']['id']}/revoke")
    # Revoked through this replica's API: refused at once, no second of grace.
    assert_envelope(client.get(f"{API}/account", headers=headers), 401, "unauthorized")
    assert client.get(f"{API}/account").status_code == 200  # the other key is untouched
