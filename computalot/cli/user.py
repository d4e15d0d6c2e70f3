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

from computalot.cli import login, render
from computalot.cli.entry import debug_enabled
from computalot.cli.exits import Exit, exit_code
from computalot.jsonsafe import loads_strict
from computalot.sdk.base import tarball_bytes
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

Url = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="COMPUTALOT_URL",
        help="API root URL (else the stored login, else http://127.0.0.1:8000).",
        show_default=False,
    ),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="COMPUTALOT_TOKEN",
        help="API key or wallet session token (else the stored login).",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")]
JobId = Annotated[str, typer.Argument(help="Job id (job_…).")]


def _fail(code: str, message: str, hint: str | None = None, status: int = Exit.USAGE) -> typer.Exit:
    """Print ``error: <code>: <message>`` (and the hint) on stderr; the exit to raise."""
    err_console.print(Text(f"error: {code}: {message}", style="bold red"), soft_wrap=True)
    if hint:
        err_console.print(Text(f"hint: {hint}", style="red"), soft_wrap=True)
    return typer.Exit(int(status))


def api_failure(exc: ApiError) -> typer.Exit:
    """An API error as one line and its documented exit code (:mod:`computalot.cli.exits`)."""
    return _fail(exc.code, exc.message, exc.recommended_action, exit_code(exc))


@contextmanager
def _client(url: str | None, token: str | None) -> Iterator[ComputalotClient]:
    """A client for one command (URL and token: flags, environment, stored login); API errors
    become one red line and their exit code."""
    client = client_factory(*login.resolve(url, token))
    try:
        yield client
    except ApiError as exc:
        if debug_enabled():
            raise  # the entry point prints the traceback, then the same line and exit code
        raise api_failure(exc) from None
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
    url: Url = None,
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
    url: Url = None,
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
def job(job_id: JobId, url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """Show one job: status, timings, error and task counts."""
    with _client(url, token) as client:
        data = client.get_job(job_id)
    if as_json:
        _print_json(data)
    else:
        console.print(render.job_panel(data))


def _events(client: ComputalotClient, job_ids: list[str]) -> Iterator[dict[str, Any]]:
    """One job's stream, or several jobs on one watch stream (each resumes after a drop)."""
    if len(job_ids) == 1:
        return client.stream(job_ids[0])
    return client.watch(job_ids)


def _event_job(event: dict[str, Any], job_ids: list[str]) -> str:
    data = event.get("data") or {}
    found = data.get("job_id") or (data.get("id") if event["event"] in ("job", "end") else None)
    return str(found) if found else job_ids[0]


def _watch(client: ComputalotClient, job_ids: list[str], as_json: bool) -> int:
    """Follow jobs to their ends, a progress bar per job; exit 0 only if every one completed."""
    finals: dict[str, dict[str, Any]] = {}
    if as_json:
        for event in _events(client, job_ids):
            typer.echo(json.dumps(event, default=str))
            if event["event"] == "end":
                finals[_event_job(event, job_ids)] = event["data"]
        completed = [finals.get(j, {}).get("status") == JobStatus.COMPLETED for j in job_ids]
        return Exit.OK if all(completed) else Exit.JOB_NOT_COMPLETED
    trackers = {job_id: render.Tracker() for job_id in job_ids}
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
        bars = {job_id: progress.add_task(job_id, total=None) for job_id in job_ids}
        for event in _events(client, job_ids):
            job_id = _event_job(event, job_ids)
            tracker = trackers.get(job_id)
            if tracker is None:
                continue
            line = tracker.apply(event)
            if line is not None:
                prefix = Text(f"{job_id} ", style="dim") if len(job_ids) > 1 else Text()
                progress.console.print(Text.assemble(prefix, line), soft_wrap=True)
            progress.update(
                bars[job_id],
                total=tracker.total,
                completed=tracker.done,
                description=f"{job_id} {tracker.status}",
            )
            if event["event"] == "end":
                finals[job_id] = event["data"]
    code: int = Exit.OK
    for job_id in job_ids:
        final = finals.get(job_id, {})
        status = str(final.get("status") or trackers[job_id].status)
        console.print(Text.assemble("job ", (job_id, "bold"), " ", render.status_text(status)))
        error = final.get("error")
        if isinstance(error, dict):
            console.print(Text(f"error: {error.get('code')}: {error.get('message')}", style="red"))
        if final.get("recommended_action") and status != JobStatus.COMPLETED:
            console.print(Text(f"hint: {final['recommended_action']}", style="yellow"))
        if status != JobStatus.COMPLETED:
            code = Exit.JOB_NOT_COMPLETED
    return code


@user_app.command()
def watch(
    job_ids: Annotated[list[str], typer.Argument(help="Job ids (job_…), up to 100.")],
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Follow jobs live: a progress bar per job, and their output.

    Exit 0 only if every one completed (1 if one failed, ended partial or was cancelled).
    """
    with _client(url, token) as client:
        code = _watch(client, list(dict.fromkeys(job_ids)), as_json)
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
    job_file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="The job as a JSON file (the POST /jobs body)."),
    ] = None,
    recipe_name: Annotated[
        str | None, typer.Option("--recipe", help="Submit to this recipe (payload = --payload).")
    ] = None,
    watch_it: Annotated[bool, typer.Option("--watch", help="Follow the job to its end.")] = False,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Submit a job from flags, a JSON file (--file), or both.

    Flags override the file's fields. With --watch: follow it, exit 0 only if it completed.
    """
    base = _job_file(job_file)
    fields: dict[str, Any] = {
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
        if recipe_name:
            payload_body = fields.pop("payload")
            if payload_body is None:
                payload_body = base.pop("payload", {})
            given = {k: v for k, v in fields.items() if v is not None}
            recipe_fields = {k: v for k, v in {**base, **given}.items() if k != "project"}
            created = client.submit_recipe_job(
                recipe_name, payload_body, idempotency_key=idempotency_key, **recipe_fields
            )
        else:
            created = client.submit_job(base, idempotency_key=idempotency_key, **fields)
        if as_json and not watch_it:
            _print_json(created)
        elif not as_json:
            job_id = Text(str(created.get("id")), style="bold")
            status = render.status_text(created.get("status"))
            console.print(Text.assemble("submitted ", job_id, " ", status))
        if watch_it:
            raise typer.Exit(_watch(client, [str(created["id"])], as_json))


def _job_file(path: Path | None) -> dict[str, Any]:
    """The job body a ``--file`` holds (an object), or ``{}``."""
    if path is None:
        return {}
    try:
        data = loads_strict(path.read_text())
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(
            f"cannot read a JSON job from it ({exc})", param_hint="--file"
        ) from None
    if not isinstance(data, dict):
        raise typer.BadParameter("the file must hold one JSON object", param_hint="--file")
    return data


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
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
    all_pages: AllPages = False,
) -> None:
    """Print a job's results as JSON.

    The summary, aggregate_result and per-element results: the first 1,000 unless --all.
    """
    with _client(url, token) as client:
        data = _all_results(client, job_id) if all_pages else client.get_results(job_id)
    if as_json:
        _print_json(data)
    else:
        console.print_json(data=data, default=str)


@user_app.command()
def cancel(job_id: JobId, url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
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
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", "-x", help=".gitignore-style pattern to leave out (repeatable)."),
    ] = None,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Pack a directory and publish it as a new revision.

    Skipped: .git, __pycache__, .venv, what the tree's .gitignore and .computalotignore files
    leave out, and the --exclude patterns.
    """
    try:
        with err_console.status(f"packing {directory} …"):
            content = tarball_bytes(directory, exclude or ())
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
def projects(url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """List your projects and their active revisions."""
    with _client(url, token) as client:
        data = client.list_projects()
    if as_json:
        _print_json(data)
    else:
        console.print(render.projects_table(data.get("projects") or []))


@user_app.command()
def account(url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """Who am I: account id, name and role."""
    with _client(url, token) as client:
        data = client.account()
    if as_json:
        _print_json(data)
    else:
        console.print(render.account_panel(data))


@user_app.command()
def presets(url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """Resource presets and their prices (use a name as requirements.profile)."""
    with _client(url, token) as client:
        data = client.presets()
    if as_json:
        _print_json(data)
    else:
        console.print(render.presets_table(data.get("presets") or []))


@user_app.command()
def recipes(url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
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
    url: Url = None,
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
def balance(url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
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
    url: Url = None,
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
    """Add every user command to ``app``: this module's at its top level, and those of the
    ``*_cmds`` modules (login, topup, artifacts …, kv …)."""
    from computalot.cli import artifacts_cmds, kv_cmds, money_cmds, session_cmds

    app.registered_commands.extend(user_app.registered_commands)
    for module in (session_cmds, money_cmds):
        app.registered_commands.extend(module.commands.registered_commands)
    app.add_typer(artifacts_cmds.artifacts_app, name="artifacts")
    app.add_typer(kv_cmds.kv_app, name="kv")
