"""The user-facing ``computalot`` commands: docs, jobs, job, submit, watch, results, cancel,
push, projects, account, presets.

They are thin over :class:`computalot.sdk.client.ComputalotClient`: every command builds one client
through :data:`client_factory` (tests swap it for one with an ``httpx.MockTransport``), shows
the answer with :mod:`computalot.cli.render` (or raw JSON with ``--json``), and turns any
:class:`ApiError` into ``error: <code>: <message>`` plus a hint, exit 1 — never a traceback.
The main CLI mounts them with :func:`register`.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from computalot.cli import render
from computalot.jsonsafe import loads_strict
from computalot.sdk.base import DEFAULT_URL, tarball_bytes
from computalot.sdk.client import ComputalotClient
from computalot.sdk.errors import ApiError, Conflict
from computalot.states import JobStatus

user_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Computalot user commands.")
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

ClientFactory = Callable[[str, str | None], ComputalotClient]


def _default_factory(url: str, token: str | None) -> ComputalotClient:
    return ComputalotClient(controller_url=url, token=token)


#: How every command gets its client; replace it to inject a transport or a preconfigured client.
client_factory: ClientFactory = _default_factory

Url = Annotated[str, typer.Option("--url", envvar="COMPUTALOT_URL", help="API root URL.")]
Token = Annotated[
    str | None,
    typer.Option("--token", envvar="COMPUTALOT_TOKEN", help="API key or wallet session token."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")]
JobId = Annotated[str, typer.Argument(help="Job id (job_…).")]


def _fail(code: str, message: str, hint: str | None = None) -> typer.Exit:
    err_console.print(Text(f"error: {code}: {message}", style="bold red"))
    if hint:
        err_console.print(Text(f"hint: {hint}", style="red"))
    return typer.Exit(1)


@contextmanager
def _client(url: str, token: str | None) -> Iterator[ComputalotClient]:
    """A client for one command; API errors become a red message and exit code 1."""
    client = client_factory(url, token)
    try:
        yield client
    except ApiError as exc:
        raise _fail(exc.code, exc.message, exc.recommended_action) from None
    finally:
        client.close()


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _json_option(raw: str | None, name: str) -> Any:
    """Parse a ``--payload``-style value: inline JSON, or ``@path`` to a JSON file."""
    if raw is None:
        return None
    try:
        text = Path(raw[1:]).read_text() if raw.startswith("@") else raw
        return loads_strict(text)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"not valid JSON ({exc})", param_hint=name) from None


@user_app.command()
def docs(
    llm: Annotated[
        bool, typer.Option("--llm", help="Print /llms.txt, the compact reference.")
    ] = False,
    full: Annotated[bool, typer.Option("--full", help="Print /llms-full.txt.")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Print the docs: /skill.md, or /llms.txt with --llm (--json: the docs index)."""
    with _client(url, token) as client:
        if as_json:
            _print_json(client.docs_index())
        else:
            typer.echo(client.llms_txt(full=full) if llm or full else client.skill_md())


@user_app.command()
def jobs(
    limit: Annotated[int, typer.Option(help="How many jobs to list.")] = 20,
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
    project: Annotated[str | None, typer.Option(help="Only jobs of this project.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only jobs with this tag.")] = None,
    cursor: Annotated[str | None, typer.Option(help="Continue a previous listing.")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """List your recent jobs."""
    with _client(url, token) as client:
        data = client.list_jobs(status=status, project=project, tag=tag, limit=limit, cursor=cursor)
    if as_json:
        _print_json(data)
        return
    console.print(render.jobs_table(data.get("jobs") or []))
    if data.get("next_cursor"):
        console.print(Text(f"more: --cursor {data['next_cursor']}", style="dim"))


@user_app.command()
def job(
    job_id: JobId, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False
) -> None:
    """Show one job: status, timings, error and task counts."""
    with _client(url, token) as client:
        data = client.get_job(job_id)
    if as_json:
        _print_json(data)
    else:
        console.print(render.job_panel(data))


def _watch(client: ComputalotClient, job_id: str, as_json: bool) -> int:
    """Follow a job's stream to its end; the exit code is 0 only for ``completed``."""
    final: dict[str, Any] = {}
    if as_json:
        for event in client.stream(job_id):
            typer.echo(json.dumps(event, default=str))
            if event["event"] == "end":
                final = event["data"]
        return 0 if final.get("status") == JobStatus.COMPLETED else 1
    tracker = render.Tracker()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
        bar = progress.add_task(job_id, total=None)
        for event in client.stream(job_id):
            line = tracker.apply(event)
            if line is not None:
                progress.console.print(line)
            description = f"{job_id} {tracker.status}"
            progress.update(
                bar, total=tracker.total, completed=tracker.done, description=description
            )
            if event["event"] == "end":
                final = event["data"]
    status = str(final.get("status") or tracker.status)
    console.print(Text.assemble("job ", (job_id, "bold"), " ", render.status_text(status)))
    error = final.get("error")
    if isinstance(error, dict):
        console.print(Text(f"error: {error.get('code')}: {error.get('message')}", style="red"))
    if final.get("recommended_action") and status != JobStatus.COMPLETED:
        console.print(Text(f"hint: {final['recommended_action']}", style="yellow"))
    return 0 if status == JobStatus.COMPLETED else 1


@user_app.command()
def watch(
    job_id: JobId, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False
) -> None:
    """Follow a job live: a task progress bar plus its output; exit 0 only if it completed."""
    with _client(url, token) as client:
        code = _watch(client, job_id, as_json)
    raise typer.Exit(code)


@user_app.command()
def submit(
    project: Annotated[
        str | None, typer.Option("--project", "-p", help="Project to run in.")
    ] = None,
    runner: Annotated[
        str | None,
        typer.Option("--runner", "-r", help="Command, e.g. 'python3 job.py' (split like a shell)."),
    ] = None,
    payload: Annotated[str | None, typer.Option(help="JSON object, or @file.json.")] = None,
    fan_out: Annotated[
        str | None, typer.Option("--fan-out", help="fan_out JSON, or @file.")
    ] = None,
    timeout: Annotated[int | None, typer.Option("--timeout", help="Per-task timeout_s.")] = None,
    max_retries: Annotated[int | None, typer.Option(help="Extra attempts per failed task.")] = None,
    priority: Annotated[str | None, typer.Option(help="high, normal or low.")] = None,
    requirements: Annotated[str | None, typer.Option(help="requirements JSON, or @file.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag (repeatable).")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Same key in 24 h = same job.")
    ] = None,
    watch_it: Annotated[bool, typer.Option("--watch", help="Follow the job to its end.")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Submit a job (with --watch: follow it and exit 0 only if it completed)."""
    body: dict[str, Any] = {
        "project": project,
        "runner_command": shlex.split(runner) if runner else None,
        "payload": _json_option(payload, "--payload"),
        "fan_out": _json_option(fan_out, "--fan-out"),
        "requirements": _json_option(requirements, "--requirements"),
        "timeout_s": timeout,
        "max_retries": max_retries,
        "priority": priority,
        "tags": tag or None,
    }
    with _client(url, token) as client:
        created = client.submit_job(idempotency_key=idempotency_key, **body)
        if as_json and not watch_it:
            _print_json(created)
        elif not as_json:
            job_id = Text(str(created.get("id")), style="bold")
            status = render.status_text(created.get("status"))
            console.print(Text.assemble("submitted ", job_id, " ", status))
        if watch_it:
            raise typer.Exit(_watch(client, str(created["id"]), as_json))


AllPages = Annotated[
    bool, typer.Option("--all", help="Read every page of results into one JSON document.")
]


def _all_results(client: ComputalotClient, job_id: str) -> dict[str, Any]:
    """The first page (summary, aggregate) with every page's results; a bar on stderr."""
    pages = client.iter_result_pages(job_id)
    first = next(pages)
    results = list(first.get("results") or [])
    total = (first.get("summary") or {}).get("total")
    columns = (TextColumn("results"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    more = bool(first.get("next_cursor"))
    with Progress(*columns, console=err_console, transient=True, disable=not more) as progress:
        bar = progress.add_task("results", total=total, completed=len(results))
        for page in pages:
            results.extend(page.get("results") or [])
            progress.update(bar, completed=len(results))
    return {**first, "results": results, "next_cursor": None}


@user_app.command()
def results(
    job_id: JobId,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
    all_pages: AllPages = False,
) -> None:
    """Print a job's results as JSON (summary, aggregate_result, per-element results; the first
    1,000 unless --all)."""
    with _client(url, token) as client:
        data = _all_results(client, job_id) if all_pages else client.get_results(job_id)
    if as_json:
        _print_json(data)
    else:
        console.print_json(data=data, default=str)


@user_app.command()
def cancel(
    job_id: JobId, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False
) -> None:
    """Cancel a job (a finished job is left as it is)."""
    with _client(url, token) as client:
        data = client.cancel_job(job_id)
    if as_json:
        _print_json(data)
        return
    job_id_text = Text(str(data.get("id", job_id)), style="bold")
    console.print(Text.assemble("job ", job_id_text, " ", render.status_text(data.get("status"))))


@user_app.command()
def push(
    directory: Annotated[Path, typer.Argument(exists=True, help="Project directory or .tar.gz.")],
    project: Annotated[str, typer.Option("--project", "-p", help="Project name.")],
    create: Annotated[bool, typer.Option("--create", help="Create the project if new.")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Pack a directory (skipping .git, __pycache__, .venv) and publish it as a new revision."""
    try:
        with err_console.status(f"packing {directory} …"):
            content = tarball_bytes(directory)
    except OSError as exc:
        raise _fail(
            "unreadable_project", str(exc), "check the directory and its permissions"
        ) from None
    with _client(url, token) as client:
        if create:
            with suppress(Conflict):
                client.create_project(project)
        with err_console.status(f"uploading {len(content):,} bytes to {project} …"):
            answer = client.push_project(project, content)
    if as_json:
        _print_json(answer)
    else:
        console.print(render.push_summary(answer))


@user_app.command()
def projects(url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False) -> None:
    """List your projects and their active revisions."""
    with _client(url, token) as client:
        data = client.list_projects()
    if as_json:
        _print_json(data)
    else:
        console.print(render.projects_table(data.get("projects") or []))


@user_app.command()
def account(url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False) -> None:
    """Who am I: account id, name and role."""
    with _client(url, token) as client:
        data = client.account()
    if as_json:
        _print_json(data)
    else:
        console.print(render.account_panel(data))


@user_app.command()
def presets(url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False) -> None:
    """Resource presets and their prices (use a name as requirements.profile)."""
    with _client(url, token) as client:
        data = client.presets()
    if as_json:
        _print_json(data)
    else:
        console.print(render.presets_table(data.get("presets") or []))


@user_app.command()
def recipes(url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False) -> None:
    """The sealed recipes, their operations and whether this cluster can run them now."""
    with _client(url, token) as client:
        data = client.list_recipes()
    if as_json:
        _print_json(data)
    else:
        console.print(render.recipes_table(data.get("recipes") or []))


@user_app.command()
def recipe(
    name: Annotated[str, typer.Argument(help="Recipe name, e.g. packing.")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """One recipe: its operations, payload fields and inputs (--json: the full schemas)."""
    with _client(url, token) as client:
        data = client.get_recipe(name)
    if as_json:
        _print_json(data)
    else:
        console.print(render.recipe_panel(data))


@user_app.command()
def balance(url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False) -> None:
    """Your credit: available, held by running jobs, and the ledger's sum (USD)."""
    with _client(url, token) as client:
        data = client.balance()
    if as_json:
        _print_json(data)
    else:
        console.print(render.balance_panel(data))


@user_app.command()
def ledger(
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="Entries.")] = 50,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Your ledger, newest first: grants, top-ups and job charges."""
    with _client(url, token) as client:
        data = client.list_ledger(limit=limit)
    if as_json:
        _print_json(data)
    else:
        console.print(render.ledger_table(data.get("entries") or []))


def register(app: typer.Typer) -> None:
    """Add every command of :data:`user_app` to ``app`` at its top level."""
    app.registered_commands.extend(user_app.registered_commands)
