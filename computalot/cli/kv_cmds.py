"""``computalot kv get|put|list|delete``: a project's key-value store (docs/python-sdk.md,
"Project KV"). ``get`` prints the value as JSON (``--json``: the whole entry with its version),
so a script can pipe it on."""

from __future__ import annotations

from typing import Annotated

import typer

from computalot.cli import render
from computalot.cli.user import AsJson, Token, Url, _client, _json_option, _print_json, console

kv_app = typer.Typer(no_args_is_help=True, help="Read and write a project's key-value store.")

Project = Annotated[str, typer.Argument(help="Project name.")]
Key = Annotated[str, typer.Argument(help="Key (may contain '/').")]
IfMatch = Annotated[
    str | None,
    typer.Option(
        "--if-match", help="Only if the key is at this version (0: must not exist; *: must exist)."
    ),
]


@kv_app.command("get")
def get_cmd(
    project: Project, key: Key, url: Url = None, token: Token = None, as_json: AsJson = False
) -> None:
    """Print a key's value (JSON); exit 5 when the key does not exist."""
    with _client(url, token) as client:
        entry = client.kv_get(project, key)
    _print_json(entry if as_json else entry.get("value"))


@kv_app.command("put")
def put_cmd(
    project: Project,
    key: Key,
    value: Annotated[str, typer.Argument(help="JSON value, or @file.json.")],
    if_match: IfMatch = None,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Write a JSON value; with --if-match a compare-and-set (exit 7 on a version mismatch)."""
    parsed = _json_option(value, "VALUE")
    with _client(url, token) as client:
        entry = client.kv_put(project, key, parsed, if_match=if_match)
    if as_json:
        _print_json(entry)
    else:
        console.print(f"{key} = version {entry.get('version')}", soft_wrap=True)


@kv_app.command("list")
def list_cmd(
    project: Project,
    prefix: Annotated[str | None, typer.Option(help="Only keys starting with this.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many keys.")] = 100,
    cursor: Annotated[str | None, typer.Option(help="Continue a previous listing.")] = None,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """A project's keys in key order (--json: with next_cursor)."""
    with _client(url, token) as client:
        data = client.kv_list(project, prefix=prefix, limit=limit, cursor=cursor)
    if as_json:
        _print_json(data)
        return
    console.print(render.kv_table(data.get("keys") or []))
    if data.get("next_cursor"):
        console.print(f"more: --cursor {data['next_cursor']}", style="dim", soft_wrap=True)


@kv_app.command("delete")
def delete_cmd(
    project: Project,
    key: Key,
    if_match: IfMatch = None,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Delete a key."""
    with _client(url, token) as client:
        data = client.kv_delete(project, key, if_match=if_match)
    if as_json:
        _print_json(data)
    else:
        console.print(f"deleted {key}", soft_wrap=True)
