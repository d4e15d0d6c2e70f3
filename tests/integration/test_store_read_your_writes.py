"""Read-your-writes across processes at the store, on SQLite and PostgreSQL.

The writer is the real admin CLI in its own process; the reader is a long-lived store the way
an API replica holds one (SQLite statements inline, pooled connections reused), whose pool has
just served a stream left before its last row (``GET /jobs?tag=`` does that on a big account).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from computalot.auth.principal import authenticate
from computalot.errors import Unauthorized
from computalot.store.db import Store
from computalot.store.jobs import list_jobs
from computalot.store.migrate import upgrade
from computalot.store.models import Job
from tests.support.helpers import admin_cli
from tests.support.postgres import create_database
from tests.support.store_rows import job_row, new_member

#: Accounts made one after another: more than the pool's 5 connections (``Store``'s default),
#: which a FIFO pool hands out in turn, so every connection reads a fresh write.
ACCOUNTS = 8
#: More jobs than one ``yield_per`` batch of the tag listing, so its stream is left mid-way.
JOBS = 600


class Backend:
    def __init__(self, url: str, data_dir: Path) -> None:
        self.url = url
        self.data_dir = data_dir

    def cli(self, *args: str) -> dict[str, Any]:
        """``computalot admin …`` in its own process against this store; its JSON answer."""
        return admin_cli(self.data_dir, *args, database_url=self.url)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def backend(
    request: pytest.FixtureRequest, tmp_path_factory: Any
) -> AsyncIterator[tuple[Backend, Store]]:
    data_dir = tmp_path_factory.mktemp("ryw")
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{data_dir / 'computalot.db'}"
    else:
        cluster = request.getfixturevalue("pg_cluster")
        url = create_database(cluster, f"ryw_{uuid.uuid4().hex[:12]}")
    reader = Store(url, inline=True)
    await upgrade(reader.engine)
    yield Backend(url, data_dir), reader
    await reader.close()


async def _leave_streams_mid_way(reader: Store) -> None:
    """What a busy replica's pool has seen: the tag listing of an account with many jobs."""
    owner = await new_member(reader, "busy")
    async with reader.sessions() as db:
        db.add_all(job_row(owner, tags=["t"], status="cancelled") for _ in range(JOBS))
        await db.commit()
    async with reader.sessions() as db:
        jobs, next_cursor = await list_jobs(
            db, owner, status=None, project=None, tag="t", type=None, limit=1, cursor=None
        )
        assert len(jobs) == 1 and next_cursor
        stream = await db.stream_scalars(select(Job.id).execution_options(yield_per=100))
        async for _job_id in stream:
            break


async def test_accounts_and_keys_made_by_the_cli_are_valid_at_once(
    backend: tuple[Backend, Store],
) -> None:
    cli, reader = backend
    await _leave_streams_mid_way(reader)
    made = []
    for n in range(ACCOUNTS):
        answer = cli.cli("create-account", "--name", f"ryw-{n}")
        async with reader.sessions() as db:
            principal = await authenticate(db, answer["api_key"])
        made.append((principal.account_id, principal.credential_id))
        assert made[-1] == (answer["account_id"], answer["key_id"]), f"account {n}"

    account_id = made[-1][0]
    extra = cli.cli("create-key", "--account", account_id)
    async with reader.sessions() as db:
        assert (await authenticate(db, extra["api_key"])).credential_id == extra["key_id"]
    cli.cli("revoke-key", extra["key_id"])
    async with reader.sessions() as db:
        with pytest.raises(Unauthorized, match="revoked"):
            await authenticate(db, extra["api_key"])
