"""``computalot login`` and ``logout`` (docs/python-sdk.md, "CLI"): keep a URL and token in
the user's config directory so later commands need neither flag nor environment."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from computalot.cli import login
from computalot.cli.exits import Exit
from computalot.cli.user import AsJson, _client, _fail, _print_json, console

commands = typer.Typer()


@commands.command("login")
def login_cmd(
    url: login.LoginUrl = None,
    token: login.LoginToken = None,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Check the token with the server first.")
    ] = True,
    as_json: AsJson = False,
) -> None:
    """Check a token with the server and keep it, with the URL, for the next commands.

    Kept in ~/.config/computalot/credentials (or under $XDG_CONFIG_HOME), mode 0600.
    """
    chosen = (url or login.load().url or login.DEFAULT_URL).rstrip("/")
    if not token:
        token = typer.prompt("API token", hide_input=True).strip()
    if not token:
        raise _fail("usage", "no token given", "pass --token flk_… (or set COMPUTALOT_TOKEN)")
    who: dict[str, object] = {}
    if verify:
        with _client(chosen, token) as client:
            who = client.account()
    path = login.save(chosen, token)
    if as_json:
        _print_json({"url": chosen, "account": who or None, "credentials": str(path)})
        return
    name = f" as {who.get('name')} ({who.get('role')})" if who else ""
    console.print(Text(f"logged in to {chosen}{name}; saved to {path}"), soft_wrap=True)


@commands.command("logout")
def logout_cmd() -> None:
    """Forget the stored login."""
    if login.forget():
        console.print(Text(f"removed {login.credentials_path()}"), soft_wrap=True)
    else:
        console.print(Text("no stored login"))
    raise typer.Exit(Exit.OK)
