"""Bring the whole platform up or down: store, Ray, engine actors, Serve app.

Used by ``computalot up`` (local Ray), ``computalot serve`` (an existing cluster) and the
integration tests (one cluster and one API per test session).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from computalot import ingress
from computalot.auth.task_tokens import load_or_create_secret
from computalot.billing.prices import price_table
from computalot.ingress_pages import INGRESS_BUFSIZE
from computalot.private_files import make_private_dirs, tighten_tree, write_private
from computalot.settings import (
    ConfigError,
    Secrets,
    Settings,
    drop_secret_env,
    is_secret_env,
    settings_env,
)
from computalot.store.accounts import create_account, create_key, grant_credit, list_accounts
from computalot.store.db import Store
from computalot.store.migrate import upgrade

READY_TIMEOUT_S = 120.0


@dataclass
class Running:
    url: str
    admin_key: str
    settings: Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def haproxy_dir(settings: Settings) -> Path:
    """Short, per-data-dir folder for HAProxy's files (its socket paths allow 97 chars)."""
    key = hashlib.sha256(str(settings.data_dir.resolve()).encode()).hexdigest()[:8]
    return Path(tempfile.gettempdir()) / f"clh-{key}"


REPLICA_PORT_BLOCK = 100
#: Locks (open descriptors) on the blocks of replica ports this process took, held for its life.
_HELD_BLOCKS: dict[int, int] = {}


def _replica_port_ranges() -> dict[str, str]:
    """The first block of ports (HTTP from 30000, gRPC 10000 higher) that no other platform
    on this machine holds and nobody listens on.

    A platform holds its block by an ``flock`` on ``$TMPDIR/computalot-replica-ports/<port>``
    for as long as the process that started it lives: a replica of another platform restarted
    later (after a crash) binds again within its own block, which "nobody listens on" alone
    would not keep (Serve binds with ``SO_REUSEPORT``, so two platforms' replicas could share a
    port and each ingress would reach the other's replicas)."""
    for http in range(30000, 40000 - REPLICA_PORT_BLOCK, REPLICA_PORT_BLOCK):
        if http not in _HELD_BLOCKS:
            block = range(http, http + REPLICA_PORT_BLOCK)
            if not all(_port_is_free(port) and _port_is_free(port + 10000) for port in block):
                continue
            if not _hold_block(http):
                continue
        return {
            "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(http),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(http + REPLICA_PORT_BLOCK),
            "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(http + 10000),
            "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(http + 10000 + REPLICA_PORT_BLOCK),
        }
    return {}


def _hold_block(http: int) -> bool:
    """Take the lock of the block starting at ``http``; False when another process holds it
    (or its file is another user's)."""
    folder = Path(tempfile.gettempdir()) / "computalot-replica-ports"
    try:
        folder.mkdir(mode=0o1777, exist_ok=True)
        fd = os.open(folder / str(http), os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _HELD_BLOCKS[http] = fd  # not inherited by children (O_CLOEXEC): released when we end
    return True


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


def serve_env(settings: Settings) -> dict[str, str]:
    """Ray Serve's fast path (HAProxy ingress + throughput mode) and where HAProxy keeps files.

    On a 2-core machine Serve's defaults served a trivial route at ~1% of plain uvicorn's rate;
    with these settings bench/api_throughput.py measures our API at 0.6-1.0x of uvicorn.
    HAProxy is started through ``computalot-haproxy`` (:mod:`computalot.ingress`), so the
    ingress's own error answers are the API's JSON envelope, and its buffer holds a request head
    of up to 255 KiB, so an over-long URL or header is answered 414/431 in the envelope too;
    every node needs the command at the head's path (the same install). An operator's own
    ``RAY_SERVE_*`` variables still win.
    """
    base = haproxy_dir(settings)
    env = {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(base / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(base / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(base),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(base / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(base / "metrics.sock"),
        # Serve binds its replicas' own HTTP/gRPC ports with SO_REUSEPORT from one fixed range:
        # two platforms on a machine would share ports, and each ingress would send requests to
        # the other's replicas. Each takes a block of its own.
        **_replica_port_ranges(),
        # Replicas otherwise stay reachable 30 s after shutdown (Ctrl-C, tests): 1 s is plenty
        # for one ingress in front of them.
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
        # Serve gives a new proxy 5 s to say it is ready, 3 times, then kills it and starts
        # over; on a busy node (a 2-core host under load) HAProxy's manager needed longer, and
        # `computalot up` died with ActorDiedError (killed by ray.kill). 30 s each.
        "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30",
        "RAY_SERVE_HAPROXY_TUNE_BUFSIZE": str(INGRESS_BUFSIZE),
    }
    wrapper = ingress.wrapper_path()
    if wrapper is not None:
        # The wrapper moves HAProxy's stats/metrics listeners to Unix sockets (no TCP port).
        env["RAY_SERVE_HAPROXY_BINARY_PATH"] = wrapper
    else:
        # HAProxy's own stats/metrics listeners default to fixed ports (8404, 9101); pick free
        # ones so two platforms (or a test run beside `computalot up`) can share a machine.
        env["RAY_SERVE_HAPROXY_STATS_PORT"] = str(_free_port())
        env["RAY_SERVE_HAPROXY_METRICS_PORT"] = str(_free_port())
    for name, value in os.environ.items():
        if name.startswith("RAY_SERVE_"):
            env[name] = value  # an operator's own tuning wins
    return env


def ingress_token(task_token_secret: str) -> str:
    """The token the ingress adds to every request it forwards (:mod:`computalot.ingress`):
    derived from the data dir's task-token secret, so it is the same after a restart (an
    ingress a running cluster keeps still matches a redeployed app) and reveals nothing of it."""
    digest = hmac.new(task_token_secret.encode(), b"computalot-ingress", hashlib.sha256)
    return digest.hexdigest()[:32]


def cluster_env(settings: Settings) -> dict[str, str]:
    """The variables every process of the platform gets (Ray's job runtime_env): Serve's, and
    the non-secret settings. The secret ones travel as :class:`Secrets` arguments."""
    env = serve_env(settings)
    env.update(settings_env(settings))
    return env


#: Where Ray hands a submitted job's runtime_env (``ray job submit --runtime-env-json``) to the
#: driver, which merges it into the runtime_env of everything the job starts.
RAY_JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def keep_secrets_out_of_env() -> None:
    """Once settings are read, remove the secret variables from this process's environment
    (the local Ray instance ``ray.init`` starts, and through it every worker, inherits it) and
    from a submitted job's runtime_env (which Ray would pass to every actor and task)."""
    drop_secret_env()
    raw = os.environ.get(RAY_JOB_CONFIG_ENV)
    if not raw:
        return
    try:
        config = json.loads(raw)
        env_vars = config["runtime_env"]["env_vars"]
    except (ValueError, KeyError, TypeError):
        return
    if isinstance(env_vars, dict) and any(is_secret_env(name) for name in env_vars):
        config["runtime_env"]["env_vars"] = {
            k: v for k, v in env_vars.items() if not is_secret_env(k)
        }
        os.environ[RAY_JOB_CONFIG_ENV] = json.dumps(config)


def secure_data_dir(settings: Settings) -> None:
    """Create the data dir 0700, or tighten an existing one (and all in it) to 0700/0600."""
    make_private_dirs(settings.data_dir)
    tighten_tree(settings.data_dir)


async def prepare_store(settings: Settings) -> str:
    """Apply migrations; make sure an admin exists; return the admin key (data_dir/admin_key)."""
    try:
        price_table(settings)  # an unknown preset in COMPUTALOT_PRICES stops start-up here
    except ValueError as exc:
        raise ConfigError(f"invalid settings: COMPUTALOT_PRICES: {exc}") from None
    secure_data_dir(settings)
    store = Store(settings.resolved_database_url)
    key_file = settings.data_dir / "admin_key"
    try:
        await upgrade(store.engine)
        async with store.sessions() as db:
            admins = [a for a in await list_accounts(db) if a.role == "admin"]
            if admins and key_file.exists():
                return key_file.read_text().strip()
            if admins:
                admin = admins[0]
            else:
                admin = await create_account(db, name="admin", role="admin")
                if settings.admin_starting_credit_usd > 0:
                    # So the quickstart's jobs are covered out of the box (docs/operating.md).
                    await grant_credit(
                        db, admin.id, settings.admin_starting_credit_usd, "starting credit"
                    )
            _key, token = await create_key(db, admin.id, name="admin (created by computalot up)")
            await db.commit()
    finally:
        await store.close()
    write_private(key_file, (token + "\n").encode())
    return token


def start(
    settings: Settings,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    include_dashboard: bool | None = None,
    ray_temp_dir: Path | None = None,
) -> Running:
    """Start (or join) Ray, the engine and the API; return once ``/ready`` answers 200.

    ``ray_temp_dir``: where a local Ray instance keeps its sessions (``computalot up`` gives
    each data dir its own, so what a killed run left is found by it: :mod:`computalot.lifecycle`).
    """
    import ray

    from computalot.capabilities import node_resources
    from computalot.engine.bootstrap import start_engine
    from serve_app.deployment import deploy

    admin_key = asyncio.run(prepare_store(settings))
    if not address:
        # Files a killed earlier run left (sockets, server state) must not confuse HAProxy.
        shutil.rmtree(haproxy_dir(settings), ignore_errors=True)
    env = cluster_env(settings)
    secrets = Secrets.of(settings)
    if secrets.task_token_secret is None:  # kept in data_dir: adopted tasks keep theirs
        secrets = dataclasses.replace(
            secrets, task_token_secret=load_or_create_secret(settings.data_dir)
        )
    assert secrets.task_token_secret is not None
    env[ingress.INGRESS_TOKEN_ENV] = ingress_token(secrets.task_token_secret)
    os.environ.update({k: v for k, v in env.items() if k.startswith("RAY_SERVE_")})
    init_kwargs: dict[str, Any] = {
        "namespace": settings.ray_namespace,
        "runtime_env": {"env_vars": env},
        "log_to_driver": False,
    }
    if address:
        init_kwargs["address"] = address
        # Under `ray job submit` the job has its own runtime_env: merge ours into it.
        os.environ.setdefault("RAY_OVERRIDE_JOB_RUNTIME_ENV", "1")
    else:
        # "local" always starts a fresh instance, even when `ray start` left one running.
        init_kwargs["address"] = "local"
        init_kwargs["num_cpus"] = num_cpus
        init_kwargs["resources"] = node_resources()  # worker capabilities (docs/recipes.md)
        init_kwargs["include_dashboard"] = include_dashboard
        init_kwargs["dashboard_host"] = "127.0.0.1"
        if ray_temp_dir is not None:
            init_kwargs["_temp_dir"] = str(ray_temp_dir)
    if not ray.is_initialized():
        keep_secrets_out_of_env()
        with _python_signal_handlers_kept():
            ray.init(**init_kwargs)
    start_engine(settings.ray_namespace, env, secrets)
    deploy(settings, env, secrets)
    url = settings.resolved_public_url
    wait_ready(url)
    return Running(url=url, admin_key=admin_key, settings=settings)


@contextlib.contextmanager
def _python_signal_handlers_kept() -> Iterator[None]:
    """Keep the Python handlers of SIGINT/SIGTERM across ``ray.init``: Ray's core worker puts
    its own crash handler on SIGTERM, which logs a stack and aborts the process (exit 134)
    instead of the clean stop ``computalot up`` asked for (computalot.lifecycle.signals)."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in saved.items():
                if callable(handler):
                    signal.signal(sig, handler)


def wait_ready(url: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    wait_for_200(f"{url}/ready", timeout_s=timeout_s)


def wait_for_200(
    url: str, *, headers: dict[str, str] | None = None, timeout_s: float = READY_TIMEOUT_S
) -> None:
    """Poll ``url`` until it answers 200; raise with the last answer after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(url, headers=headers, timeout=5.0)
            if answer.status_code == 200:
                return
            last = f"{answer.status_code} {answer.text[:200]}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 in {timeout_s:.0f} s: {last}")


def stop(settings: Settings, *, shutdown_ray: bool = True) -> None:
    import ray
    from ray import serve

    from computalot.engine.bootstrap import stop_engine
    from serve_app.deployment import undeploy

    if not ray.is_initialized():
        return
    if shutdown_ray:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(haproxy_dir(settings), ignore_errors=True)
        return
    undeploy()
    stop_engine(settings.ray_namespace)
