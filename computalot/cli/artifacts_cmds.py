"""``computalot artifacts upload|download|list|meta|delete`` with transfer progress bars
(docs/python-sdk.md, "CLI"). Bars go to stderr, so ``--json`` output stays one document."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from computalot.cli import render
from computalot.cli.user import AsJson, Token, Url, _client, _fail, _print_json, console
from computalot.cli.user import err_console as err

artifacts_app = typer.Typer(no_args_is_help=True, help="Upload, download and list artifacts.")

#: Files above this many bytes go up as a resumable multipart upload.
MULTIPART_ABOVE = 64 * 1024 * 1024


@contextmanager
def _bar(label: str, total: int | None, show: bool) -> Iterator[Any]:
    """A transfer bar on stderr; yields the callback that advances it by n bytes."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True, disable=not show) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


@artifacts_app.command("upload")
def upload(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="File to upload.")],
    filename: Annotated[
        str | None, typer.Option(help="Name to store (default: the file's).")
    ] = None,
    multipart: Annotated[
        bool | None,
        typer.Option(
            "--multipart/--single",
            help="Resumable parts (default: for files over 64 MiB) or one request.",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        str | None, typer.Option("--resume", help="Finish this multipart upload (upl_…).")
    ] = None,
    part_size: Annotated[int | None, typer.Option(help="Bytes per part (multipart).")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Upload a file as an artifact and print its id (art_…).

    A multipart upload that fails says how to resume it with --resume.
    """
    size = path.stat().st_size
    parts = bool(resume) or (multipart if multipart is not None else size > MULTIPART_ABOVE)
    with _client(url, token) as client, _bar(f"upload {path.name}", size, progress) as advance:
        if parts:
            artifact = client.upload_artifact_resumable(
                path, upload_id=resume, filename=filename, part_size=part_size, progress=advance
            )
        else:
            artifact = client.upload_artifact(path, filename=filename, progress=advance)
    if as_json:
        _print_json(artifact)
    else:
        console.print(render.artifact_line(artifact), soft_wrap=True)


@artifacts_app.command("download")
def download(
    artifact_id: Annotated[str, typer.Argument(help="Artifact id (art_…).")],
    dest: Annotated[
        Path | None,
        typer.Argument(help="File or directory to write (default: its filename, here)."),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Download an artifact's bytes (checked against its sha256)."""
    with _client(url, token) as client:
        meta = client.artifact_meta(artifact_id)
        name = os.path.basename(str(meta.get("filename") or artifact_id)) or artifact_id
        target = dest or Path(name)
        if target.is_dir():
            target = target / name
        if not target.parent.is_dir():
            raise _fail("no_such_directory", f"{target.parent} does not exist")
        size = meta.get("size")
        total = int(size) if isinstance(size, int) else None
        with _bar(f"download {name}", total, progress) as advance:
            done = client.download_artifact(artifact_id, target, progress=advance)
    if as_json:
        _print_json({**meta, "path": done["path"]})
    else:
        console.print(f"{artifact_id} -> {done['path']} ({render.human_size(done['size'])})")


@artifacts_app.command("list")
def list_cmd(
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="How many.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="Continue a previous listing.")] = None,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Your artifacts, newest first (ids never cut)."""
    with _client(url, token) as client:
        data = client.list_artifacts(limit=limit, cursor=cursor)
    if as_json:
        _print_json(data)
        return
    console.print(render.artifacts_table(data.get("artifacts") or []))
    if data.get("next_cursor"):
        console.print(f"more: --cursor {data['next_cursor']}", style="dim", soft_wrap=True)


@artifacts_app.command("meta")
def meta_cmd(
    artifact_id: Annotated[str, typer.Argument(help="Artifact id (art_…).")],
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """One artifact's metadata."""
    with _client(url, token) as client:
        data = client.artifact_meta(artifact_id)
    if as_json:
        _print_json(data)
    else:
        console.print(render.artifact_line(data), soft_wrap=True)


@artifacts_app.command("delete")
def delete_cmd(
    artifact_id: Annotated[str, typer.Argument(help="Artifact id (art_…).")],
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Delete an artifact."""
    with _client(url, token) as client:
        data = client.delete_artifact(artifact_id)
    if as_json:
        _print_json(data)
    else:
        console.print(f"deleted {artifact_id}")
