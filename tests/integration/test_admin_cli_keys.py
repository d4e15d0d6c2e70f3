"""Keys made by ``computalot admin`` while the platform runs are valid on the very next request.

The CLI runs in its own process against the running test platform's data dir; each key is used
over HTTP at once. Beforehand the API's connection pool serves what a busy account makes it
serve: a tag listing of more jobs than one batch of its stream (it used to leave that stream's
read snapshot on a pooled connection, and keys made after it were "unknown" there).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from computalot.store.db import Store
from tests.support.helpers import admin_cli
from tests.support.store_rows import job_row

API = "/api/v1"
#: More than the API pool's 5 connections, each of which serves one of the checks in turn.
ACCOUNTS = 8
JOBS = 600


async def _add_jobs(database_url: str, account_id: str, tag: str) -> None:
    """Finished jobs written straight to the platform's store (the engine leaves them be)."""
    store = Store(database_url)
    try:
        async with store.sessions() as db:
            db.add_all(job_row(account_id, tags=[tag], status="cancelled") for _ in range(JOBS))
            await db.commit()
    finally:
        await store.close()


def test_keys_from_the_admin_cli_work_at_once(
    platform: Any, new_account: Callable[..., httpx.Client]
) -> None:
    settings = platform.settings
    busy = new_account()
    asyncio.run(_add_jobs(settings.resolved_database_url, busy.account["id"], "many"))  # type: ignore[attr-defined]
    for _ in range(3):  # a few connections of the pool, whichever each request gets
        listed = busy.get(f"{API}/jobs", params={"tag": "many", "limit": 1})
        assert listed.status_code == 200, listed.text
        assert len(listed.json()["jobs"]) == 1 and listed.json()["next_cursor"]

    made: list[dict[str, Any]] = []
    with httpx.Client(base_url=platform.url, timeout=60) as client:
        for n in range(ACCOUNTS):
            answer = admin_cli(settings.data_dir, "create-account", "--name", f"cli-{n}")
            headers = {"Authorization": f"Bearer {answer['api_key']}"}
            me = client.get(f"{API}/account", headers=headers)
            assert me.status_code == 200, f"account {n} of {ACCOUNTS}: {me.text}"
            assert me.json()["id"] == answer["account_id"]
            made.append(answer)

        extra = admin_cli(settings.data_dir, "create-key", "--account", made[0]["account_id"])
        headers = {"Authorization": f"Bearer {extra['api_key']}"}
        assert client.get(f"{API}/account", headers=headers).status_code == 200
        admin_cli(settings.data_dir, "revoke-key", extra["key_id"])
        revoked = client.get(f"{API}/account", headers=headers)
        assert revoked.status_code == 401, revoked.text
        assert "revoked" in revoked.json()["error"]["message"]
