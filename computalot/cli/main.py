"""``computalot`` command line: run the platform (``up``, ``serve``) and administer it.

User-facing commands (jobs, submit, watch, push …) live in :mod:`computalot.cli.user`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from computalot.cli.extras import require_server_extra
from computalot.errors import ComputalotError
from computalot.private_files import make_private_dirs

if TYPE_CHECKING:  # the settings need pydantic: the server extra, not the plain install
    from computalot.settings import Settings

app = typer.Typer(help="Computalot: Ray-powered compute platform.", no_args_is_help=True)
admin_app = typer.Typer(
    help="Administer accounts, keys, wallets and credit (direct store access).",
    callback=require_server_extra,
)
app.add_typer(admin_app, name="admin")
console = Console()
err = Console(stderr=True)

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="state directory (default ./.computalot)")
]
Port = Annotated[int | None, typer.Option("--port", help="API port (default 8000)")]
Host = Annotated[str | None, typer.Option("--host", help="API bind address (default 127.0.0.1)")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON")]


def _settings(
    data_dir: Path | None = None, port: int | None = None, host: str | None = None
) -> Settings:
    from computalot.settings import ConfigError, load_settings

    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if port is not None:
        overrides["port"] = port
    if host is not None:
        overrides["host"] = host
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    settings.data_dir = settings.data_dir.resolve()
    os.environ["COMPUTALOT_DATA_DIR"] = str(settings.data_dir)
    os.environ["COMPUTALOT_PORT"] = str(settings.port)
    os.environ["COMPUTALOT_HOST"] = settings.host
    return settings


def _announce(running: Any) -> None:
    console.print(f"API: {running.url}", highlight=False, soft_wrap=True)
    console.print(f"Admin key: {running.admin_key}", highlight=False, soft_wrap=True)
    console.print(
        f"(key saved to {running.settings.data_dir / 'admin_key'}; try: curl -H "
        f'"Authorization: Bearer $(cat {running.settings.data_dir / "admin_key"})" '
        f"{running.url}/api/v1/account)",
        highlight=False,
        soft_wrap=True,
    )
    from computalot.ray_dashboard import dashboard_line

    dashboard = dashboard_line()
    if dashboard is not None:
        console.print(dashboard, highlight=False, soft_wrap=True, markup=False)
    sys.stdout.flush()


def _refuse_taken_port(settings: Settings) -> None:
    """One line and exit 2 when the API port is taken (often a Serve HAProxy a killed run left
    behind), before Ray starts: Serve would otherwise die with a long traceback."""
    from computalot.ports import port_in_use, port_in_use_line

    if port_in_use(settings.host, settings.port):
        line = port_in_use_line(settings.host, settings.port, "the API")
        err.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)


def _check_sandbox(settings: Settings) -> None:
    """Say loudly when tasks cannot be confined here (docs/sandbox.md); refuse to start when
    they could not run at all."""
    from computalot.sandbox.status import sandbox_check

    check, warnings = sandbox_check(settings)
    if check != "ok":
        err.print(f"[red bold]sandbox {check}[/red bold]")
        raise typer.Exit(2)
    for warning in warnings:
        err.print(f"[yellow bold]WARNING:[/yellow bold] {warning}")


def _block_until_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def _take_over_data_dir(settings: Settings) -> Any:
    """Refuse (one line, exit 2) while another ``up`` runs on this data dir; remove what a
    killed one left, saying so (:mod:`computalot.lifecycle.guard`)."""
    from computalot.lifecycle.guard import AnotherUp, UpGuard
    from computalot.platform import haproxy_dir

    guard = UpGuard(settings.data_dir, haproxy_dir(settings), settings.port)
    try:
        lines = guard.take_over()
    except AnotherUp as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    return guard


@app.command()
def up(
    data_dir: DataDir = None,
    port: Port = None,
    host: Host = None,
    address: Annotated[
        str | None, typer.Option(help="join this Ray cluster instead of starting one")
    ] = None,
    num_cpus: Annotated[int | None, typer.Option(help="CPUs for the local Ray instance")] = None,
) -> None:
    """Start Ray (local unless --address), the engine and the API; Ctrl-C or SIGTERM stops
    everything (docs/operating.md, "Stopping and restarting")."""
    require_server_extra()
    from computalot import platform
    from computalot.lifecycle.signals import interrupt_on_stop_signals, stopping

    settings = _settings(data_dir, port, host)
    guard = None
    if address is None:
        guard = _take_over_data_dir(settings)
        _refuse_taken_port(settings)
    _check_sandbox(settings)
    interrupt_on_stop_signals()
    try:
        if guard is not None:
            guard.arm()
        with console.status("starting Ray, the engine and the API …"):
            running = platform.start(
                settings,
                address=address,
                num_cpus=num_cpus,
                ray_temp_dir=guard.ray_temp_dir if guard is not None else None,
            )
        _announce(running)
        _block_until_signal()
    except KeyboardInterrupt:
        pass
    finally:
        stopping()
        console.print("shutting down …")
        platform.stop(settings, shutdown_ray=address is None)
        for line in guard.close() if guard is not None else []:
            console.print(line, highlight=False, soft_wrap=True, markup=False)


@app.command()
def serve(
    data_dir: DataDir = None,
    port: Port = None,
    host: Host = None,
    address: Annotated[str, typer.Option(help="Ray cluster address")] = "auto",
    detach: Annotated[bool, typer.Option(help="return once the API is ready")] = False,
) -> None:
    """Deploy the engine and API onto a running Ray cluster (``ray job submit -- computalot serve``)."""
    require_server_extra()
    from computalot import platform

    settings = _settings(data_dir, port, host)
    _check_sandbox(settings)
    running = platform.start(settings, address=address)
    _announce(running)
    if detach:
        return
    try:
        _block_until_signal()
    finally:
        platform.stop(settings, shutdown_ray=False)


# ---- admin --------------------------------------------------------------------------------------
def _run_admin(data_dir: Path | None, fn: Any) -> Any:
    from computalot.store.db import Store
    from computalot.store.migrate import upgrade

    settings = _settings(data_dir)
    make_private_dirs(settings.data_dir)  # the store makes its SQLite file 0600

    async def go() -> Any:
        store = Store(settings.resolved_database_url)
        try:
            await upgrade(store.engine)
            async with store.sessions() as db:
                result = await fn(db)
                await db.commit()
                return result
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except ComputalotError as exc:
        err.print(f"[red]error:[/red] {exc.code}: {exc.message}")
        err.print(f"hint: {exc.recommended_action}")
        raise typer.Exit(1) from None


def _print(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        for key, value in data.items():
            console.print(f"[bold]{key}[/bold]: {value}", highlight=False)


@admin_app.command("create-account")
def create_account_cmd(
    name: Annotated[str, typer.Option("--name")],
    role: Annotated[str, typer.Option("--role")] = "member",
    credit: Annotated[float | None, typer.Option("--credit", help="initial credit, USD")] = None,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Create an account and its first API key (shown once)."""
    from computalot.store import accounts

    async def go(db: Any) -> dict[str, Any]:
        account = await accounts.create_account(db, name=name, role=accounts.check_role(role))
        key, token = await accounts.create_key(db, account.id, name="initial")
        if credit:
            await accounts.grant_credit(db, account.id, Decimal(str(credit)), "initial credit")
        return {
            "account_id": account.id,
            "name": name,
            "role": role,
            "key_id": key.id,
            "api_key": token,
        }

    _print(_run_admin(data_dir, go), as_json)


@admin_app.command("create-key")
def create_key_cmd(
    account_id: Annotated[str, typer.Option("--account")],
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Issue another API key for an account."""
    from computalot.store import accounts

    async def go(db: Any) -> dict[str, Any]:
        key, token = await accounts.create_key(db, account_id)
        return {"account_id": account_id, "key_id": key.id, "api_key": token}

    _print(_run_admin(data_dir, go), as_json)


@admin_app.command("revoke-key")
def revoke_key_cmd(
    key_id: Annotated[str, typer.Argument()], data_dir: DataDir = None, as_json: AsJson = False
) -> None:
    """Revoke an API key (by key id)."""
    from computalot.store import accounts

    async def go(db: Any) -> dict[str, Any]:
        key = await accounts.revoke_key(db, key_id)
        return {"key_id": key.id, "revoked_at": str(key.revoked_at)}

    _print(_run_admin(data_dir, go), as_json)


@admin_app.command("whitelist-wallet")
def whitelist_wallet_cmd(
    wallet: Annotated[str, typer.Option("--wallet")],
    chain: Annotated[str, typer.Option("--chain")] = "base",
    role: Annotated[str, typer.Option("--role")] = "member",
    name: Annotated[str | None, typer.Option("--name")] = None,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Allow a wallet to sign in (its account is created at first sign-in)."""
    from computalot.auth.siwe import chain_id, normalize_address
    from computalot.store import accounts

    async def go(db: Any) -> dict[str, Any]:
        chain_name = chain.strip().lower()
        chain_id(chain_name)
        entry = await accounts.whitelist_wallet(
            db, wallet_address=normalize_address(wallet), chain=chain_name, role=role, name=name
        )
        return {"wallet_address": entry.wallet_address, "chain": entry.chain, "role": entry.role}

    _print(_run_admin(data_dir, go), as_json)


@admin_app.command("grant")
def grant_cmd(
    account_id: Annotated[str, typer.Option("--account")],
    amount: Annotated[float, typer.Option("--amount", help="USD")],
    memo: Annotated[str | None, typer.Option("--memo")] = None,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Grant credit to an account."""
    from computalot.store import accounts

    async def go(db: Any) -> dict[str, Any]:
        entry = await accounts.grant_credit(db, account_id, Decimal(str(amount)), memo)
        return {
            "entry_id": entry.id,
            "account_id": account_id,
            "amount_usd": float(entry.amount_usd),
        }

    _print(_run_admin(data_dir, go), as_json)


def _register_user_commands() -> None:
    try:
        from computalot.cli.user import register
    except ImportError:  # pragma: no cover - user commands are optional at import time
        return
    register(app)


_register_user_commands()


def main() -> None:
    app()
