"""Shared fixtures: one local Ray cluster + one API server per session, a real PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from computalot.store.db import Store
from computalot.store.migrate import upgrade
from tests.support.helpers import make_tarball
from tests.support.postgres import create_database, free_port, start_cluster

pytest_plugins = ["tests.support.beside"]

# Unit tests must never see a developer's own settings.
for _name in list(os.environ):
    if _name.startswith("COMPUTALOT_"):
        del os.environ[_name]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    cluster, reason = start_cluster()
    if cluster is None:
        message = f"PostgreSQL unavailable, its store tests are SKIPPED: {reason}"
        print(f"\n{'!' * 20} {message} {'!' * 20}\n", file=sys.stderr)
        pytest.skip(message)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Any]:
    """A real S3-compatible HTTP server (moto's server mode, a subprocess on a free port);
    this process gets its credentials in the environment. ``.make_bucket(name)`` per user."""
    from tests.support.s3 import start_moto, use_credentials

    server, reason = start_moto()
    if server is None:
        message = f"moto's S3 server did not start, its S3 tests are SKIPPED: {reason}"
        print(f"\n{'!' * 20} {message} {'!' * 20}\n", file=sys.stderr)
        pytest.skip(message)
    use_credentials()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The whole platform: local Ray, engine actors, Serve app on a free port, SQLite store."""
    from computalot import platform as plat
    from computalot.settings import get_settings, load_settings

    data_dir = tmp_path_factory.mktemp("computalot-data")
    shared = task_shared_root(tmp_path_factory)
    data_dir.chmod(0o755)  # an existing data dir with a loose mode: start tightens it
    os.environ.update(
        {
            "COMPUTALOT_DATA_DIR": str(data_dir),
            # Secrets in the starting process's environment, as an operator may give them:
            # start takes them out of it, and no process of the platform ever sees them
            # (tests/integration/test_platform_secrets.py).
            "COMPUTALOT_DATABASE_URL": f"sqlite+aiosqlite:///{data_dir.resolve()}/computalot.db",
            "COMPUTALOT_METRICS_TOKEN": f"metrics-{uuid.uuid4().hex}",
            "COMPUTALOT_PORT": str(free_port()),
            # Tests hand runners a directory of their own to report through (task_tmp); every
            # other path of the host stays out of the sandbox. The default memory limit is
            # small so the isolation probe goes past it quickly (test_runner_isolation).
            "COMPUTALOT_SANDBOX_SHARED_DIRS": json.dumps([str(shared)]),
            "COMPUTALOT_TASK_MEMORY_MB": "1024",
            "COMPUTALOT_RATE_LIMIT_PER_MINUTE": "100000",
            # Per client address on feedback and wallet challenge: the session's tests (fuzzing
            # included) stay under it from 127.0.0.1; test_anon_rate_limit spends it elsewhere.
            "COMPUTALOT_ANON_RATE_LIMIT_PER_MINUTE": "300",
            "COMPUTALOT_KILL_GRACE_S": "1.0",
            "COMPUTALOT_DISPATCH_INTERVAL_S": "0.2",
            # Reached with a few 16 MiB results (tests/integration/test_results_bounds.py).
            "COMPUTALOT_MAX_JOB_RESULT_BYTES": str(40 * 1024 * 1024),
            # Small enough that the quota tests reach them quickly (test_hostile_input).
            "COMPUTALOT_MAX_OPEN_JOBS_PER_ACCOUNT": "300",
            "COMPUTALOT_MAX_QUEUED_TASKS_PER_ACCOUNT": "30000",
            # An operator's wallet, as /ready asks for (the placeholder is a burn address).
            "COMPUTALOT_X402_PAY_TO": "0x00000000000000000000000000000000c0ffee01",
            # Callback receivers of the tests listen on 127.0.0.2, the one private address
            # allowed: 127.0.0.1, [::1], 10/8 stay refused as in production
            # (tests/integration/test_callbacks.py). Retries come quickly.
            "COMPUTALOT_CALLBACK_ALLOW_NETWORKS": '["127.0.0.2/32"]',
            "COMPUTALOT_CALLBACK_RETRY_S": "1,1,1,1",
            "COMPUTALOT_CALLBACK_POLL_S": "0.3",
        }
    )
    get_settings.cache_clear()
    settings = load_settings()
    # Started the way a background launch (nohup, `&` in a script) starts it: SIGINT ignored,
    # which Ray's processes and every worker inherit. Cancels of running tasks must still land.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        running = plat.start(settings, num_cpus=4, include_dashboard=False)
    finally:
        signal.signal(signal.SIGINT, previous)
    yield running
    plat.stop(settings)


def task_shared_root(factory: pytest.TempPathFactory) -> Path:
    """The one host directory the test platform shares with every task (world-writable: tasks
    run as an unprivileged uid)."""
    shared = factory.getbasetemp() / "task-shared"
    shared.mkdir(exist_ok=True)
    shared.chmod(0o777)
    return shared


@pytest.fixture
def task_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh directory that both the test and the runners of its jobs can read and write."""
    path = Path(tempfile.mkdtemp(dir=task_shared_root(tmp_path_factory)))
    path.chmod(0o777)
    return path


@pytest.fixture(scope="session")
def base_url(platform: Any) -> str:
    return str(platform.url)


@pytest.fixture(scope="session")
def admin(platform: Any) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=platform.url, headers={"Authorization": f"Bearer {platform.admin_key}"}, timeout=60
    ) as client:
        yield client


@pytest.fixture(scope="session")
def anon(platform: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def new_account(admin: httpx.Client, platform: Any) -> Callable[..., httpx.Client]:
    """Create an account with the given role; return an httpx client holding its key."""
    clients: list[httpx.Client] = []

    def make(
        role: str = "member", name: str | None = None, credit_usd: float | None = 1_000_000
    ) -> httpx.Client:
        """``credit_usd``: the account's starting grant (ample by default, so every job's hold
        is covered; billing tests pass a small one, or None for none)."""
        body: dict[str, Any] = {"name": name or f"acct-{uuid.uuid4().hex[:8]}", "role": role}
        if credit_usd is not None:
            body["credit_usd"] = credit_usd
        answer = admin.post("/api/v1/admin/accounts", json=body)
        assert answer.status_code == 201, answer.text
        token = answer.json()["key"]["token"]
        client = httpx.Client(
            base_url=platform.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        client.account = answer.json()["account"]  # type: ignore[attr-defined]
        client.token = token  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make  # type: ignore[misc]
    for c in clients:
        c.close()


@pytest.fixture(scope="session")
def make_project() -> Callable[..., str]:
    """Create a project in the given client's account and push ``files``; return its name."""

    def make(client: httpx.Client, files: dict[str, str | bytes], name: str | None = None) -> str:
        name = name or f"p-{uuid.uuid4().hex[:10]}"
        created = client.post("/api/v1/projects", json={"name": name})
        assert created.status_code == 201, created.text
        pushed = client.post(f"/api/v1/projects/{name}/push", content=make_tarball(files))
        assert pushed.status_code == 200, pushed.text
        return name

    return make


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path_factory: Any) -> AsyncIterator[Store]:
    """A migrated store on each backend (a fresh database per test module)."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("store") / "computalot.db"
        url = f"sqlite+aiosqlite:///{path}"
    else:
        cluster = request.getfixturevalue("pg_cluster")
        url = create_database(cluster, f"store_{uuid.uuid4().hex[:12]}")
    store = Store(url)
    await upgrade(store.engine)
    yield store
    await store.close()
