"""Rich renderings of API answers for the user CLI (:mod:`computalot.cli.user`).

Pure functions from plain dicts to rich renderables, kept apart from the commands so that the
commands read as "call, then show" and the layouts can be tested without a server. They are
lenient on purpose: a missing field shows as blank, never as a crash, so an older or newer
server still renders.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from computalot.states import TERMINAL_TASK, JobStatus, TaskStatus

STATUS_STYLE: dict[str, str] = {
    JobStatus.COMPLETED: "green",
    JobStatus.PARTIAL: "yellow",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "dim",
    JobStatus.RUNNING: "cyan",
    JobStatus.QUEUED: "blue",
    JobStatus.PLANNING: "blue",
}
FINISHED_TASK: frozenset[str] = frozenset(TERMINAL_TASK)
COUNT_KEYS = ("total", *TaskStatus)
DIFF_SHOWN = 20  # file names listed per diff kind before "… N more"


def status_text(status: str | None) -> Text:
    value = status or "?"
    return Text(value, style=STATUS_STYLE.get(value, ""))


def task_counts(job: dict[str, Any]) -> dict[str, int]:
    counts = job.get("task_counts") or {}
    return {k: int(counts.get(k) or 0) for k in COUNT_KEYS}


def job_kind(job: dict[str, Any]) -> str:
    return f"recipe:{job['recipe']}" if job.get("recipe") else str(job.get("type") or "")


def _pct(value: Any) -> str:
    try:
        return f"{float(value or 0):.0%}"
    except (TypeError, ValueError):
        return "?"


def _grid() -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    return grid


def _table(*headers: str, whole: dict[str, list[str]]) -> Table:
    """A table whose ``whole`` columns (ids, names: what a user copies into the next command)
    are never cut or wrapped, however narrow the terminal or pipe (80 columns): they keep the
    width of their longest value and the other columns give way."""
    table = Table()
    for header in headers:
        values = whole.get(header)
        if values is None:
            table.add_column(header)
        else:
            width = max([len(header), *(len(v) for v in values)])
            table.add_column(header, no_wrap=True, min_width=width, overflow="fold")
    return table


def jobs_table(jobs: list[dict[str, Any]]) -> Table:
    ids = [str(job.get("id")) for job in jobs]
    table = _table(
        "ID", "STATUS", "KIND", "PROJECT", "TASKS", "PROGRESS", "CREATED", whole={"ID": ids}
    )
    for job in jobs:
        counts = task_counts(job)
        table.add_row(
            str(job.get("id")),
            status_text(job.get("status")),
            job_kind(job),
            str(job.get("project") or ""),
            f"{counts['completed']}/{counts['total']}",
            _pct(job.get("progress")),
            str(job.get("created_at") or ""),
        )
    return table


def job_panel(job: dict[str, Any]) -> Group:
    """The job's fields in a panel, then its task counts in a one-row table."""
    grid = _grid()
    grid.add_row("status", status_text(job.get("status")))
    cost = job.get("cost") or {}
    rows = [
        ("kind", job_kind(job)),
        ("project", job.get("project")),
        ("revision", job.get("revision_id")),
        ("priority", job.get("priority")),
        ("tags", ", ".join(job.get("tags") or [])),
        ("depends on", ", ".join(job.get("depends_on") or [])),
        ("created", job.get("created_at")),
        ("started", job.get("started_at")),
        ("finished", job.get("finished_at")),
        ("progress", _pct(job.get("progress"))),
        (
            "cost",
            cost and f"held ${cost.get('held_usd', 0)}, charged ${cost.get('charged_usd', 0)}",
        ),
    ]
    for label, value in rows:
        if value:
            grid.add_row(label, Text(str(value)))
    error = job.get("error")
    if isinstance(error, dict):
        grid.add_row("error", Text(f"{error.get('code')}: {error.get('message')}", style="red"))
    if job.get("recommended_action"):
        grid.add_row("next step", Text(str(job["recommended_action"]), style="yellow"))
    for warning in job.get("warnings") or []:
        grid.add_row("warning", Text(str(warning), style="yellow"))
    counts = task_counts(job)
    table = Table(*(k.upper() for k in counts), title="tasks")
    table.add_row(*(str(v) for v in counts.values()))
    return Group(Panel(grid, title=str(job.get("id")), expand=False), table)


def push_summary(answer: dict[str, Any]) -> Group:
    """Revision id, hash, and the tarball diff against the previous revision."""
    rev = answer.get("revision") or {}
    diff = answer.get("tarball_diff") or {}
    lines: list[Text] = [
        Text.assemble(
            "pushed ",
            (str(rev.get("id")), "bold green"),
            f"  hash {str(rev.get('content_hash') or '')[:12]}  {rev.get('size_bytes', '?')} bytes",
        ),
        Text(
            f"tarball_diff: +{len(diff.get('added') or [])} added, "
            f"~{len(diff.get('modified') or [])} modified, "
            f"-{len(diff.get('removed') or [])} removed, {diff.get('unchanged', 0)} unchanged"
        ),
    ]
    for key, mark, style in (
        ("added", "+", "green"),
        ("modified", "~", "yellow"),
        ("removed", "-", "red"),
    ):
        names = [str(n) for n in diff.get(key) or []]
        lines.extend(Text(f"  {mark} {name}", style=style) for name in names[:DIFF_SHOWN])
        if len(names) > DIFF_SHOWN:
            lines.append(Text(f"  … {len(names) - DIFF_SHOWN} more {key}", style="dim"))
    lines.extend(Text(f"warning: {w}", style="yellow") for w in answer.get("warnings") or [])
    return Group(*lines)


def projects_table(projects: list[dict[str, Any]]) -> Table:
    names = [str(proj.get("name")) for proj in projects]
    revisions = [str((proj.get("active_revision") or {}).get("id") or "-") for proj in projects]
    table = _table(
        "NAME",
        "DESCRIPTION",
        "REVISION",
        "FILES",
        "PUSHED",
        whole={"NAME": names, "REVISION": revisions},
    )
    for proj in projects:
        rev = proj.get("active_revision") or {}
        files = rev.get("files")
        n_files = len(files) if isinstance(files, list) else files
        table.add_row(
            str(proj.get("name")),
            str(proj.get("description") or ""),
            str(rev.get("id") or "-"),
            "" if n_files is None else str(n_files),
            str(rev.get("pushed_at") or ""),
        )
    return table


def account_panel(account: dict[str, Any]) -> Panel:
    """Who the token belongs to; the callback secret is left to ``--json`` on purpose."""
    grid = _grid()
    for key in ("id", "name", "role", "wallet_address", "chain", "created_at"):
        if account.get(key):
            grid.add_row(key, str(account[key]))
    return Panel(grid, title="account", expand=False)


def presets_table(presets: list[dict[str, Any]]) -> Table:
    table = Table("NAME", "REQUIREMENTS", "USD/HOUR")
    for preset in presets:
        reqs = preset.get("requirements") or {}
        table.add_row(
            str(preset.get("name")),
            " ".join(f"{k}={v}" for k, v in reqs.items() if v is not None),
            str(preset.get("usd_per_hour")),
        )
    return table


def recipes_table(recipes: list[dict[str, Any]]) -> Table:
    names = [str(r.get("name")) for r in recipes]
    table = _table("NAME", "AVAILABLE", "OPERATIONS", "DESCRIPTION", whole={"NAME": names})
    for recipe in recipes:
        available = bool(recipe.get("available"))
        table.add_row(
            str(recipe.get("name")),
            Text("yes", style="green") if available else Text("no", style="dim"),
            ", ".join(str(op) for op in recipe.get("operations") or []),
            str(recipe.get("description") or recipe.get("unavailable_reason") or ""),
        )
    return table


def recipe_panel(recipe: dict[str, Any]) -> Group:
    """One recipe: what it does, its operations (and whether this cluster runs them now) and
    the payload fields it takes; the full schemas are left to ``--json``."""
    grid = _grid()
    grid.add_row("description", Text(str(recipe.get("description") or "")))
    if recipe.get("unavailable_reason"):
        grid.add_row("unavailable", Text(str(recipe["unavailable_reason"]), style="yellow"))
    fields = ((recipe.get("payload_schema") or {}).get("properties") or {}).keys()
    if fields:
        grid.add_row("payload", Text(", ".join(sorted(fields))))
    if recipe.get("artifact_inputs"):
        grid.add_row("artifact inputs", Text(", ".join(map(str, recipe["artifact_inputs"]))))
    entries = [
        op if isinstance(op, dict) else {"name": op} for op in recipe.get("operations") or []
    ]
    names = [str(entry.get("name")) for entry in entries]
    ops = _table("OPERATION", "AVAILABLE", "DESCRIPTION", whole={"OPERATION": names})
    for entry in entries:
        ops.add_row(
            str(entry.get("name")),
            "yes" if entry.get("available") else "no",
            str(entry.get("description") or ""),
        )
    return Group(Panel(grid, title=str(recipe.get("name")), expand=False), ops)


def balance_panel(balance: dict[str, Any]) -> Panel:
    grid = _grid()
    for key, label in (
        ("available_usd", "available"),
        ("held_usd", "held"),
        ("ledger_balance_usd", "ledger"),
    ):
        grid.add_row(label, f"${float(balance.get(key) or 0):,.6f}")
    return Panel(grid, title="balance (USD)", expand=False)


def ledger_table(entries: list[dict[str, Any]]) -> Table:
    ids = [str(e.get("id")) for e in entries]
    jobs = [str(e.get("job_id") or "") for e in entries]
    table = _table("ID", "KIND", "USD", "JOB", "CREATED", "MEMO", whole={"ID": ids, "JOB": jobs})
    for entry in entries:
        amount = float(entry.get("amount_usd") or 0)
        table.add_row(
            str(entry.get("id")),
            str(entry.get("kind") or ""),
            Text(f"{amount:+,.6f}", style="green" if amount >= 0 else "red"),
            str(entry.get("job_id") or ""),
            str(entry.get("created_at") or ""),
            str(entry.get("memo") or ""),
        )
    return table


class Tracker:
    """Task progress for ``watch``, fed by stream events.

    Job snapshots (``job``/``end``) carry the authoritative counts; ``task`` events arrive in
    between, so the bar moves with whichever has seen more finished tasks.
    """

    def __init__(self) -> None:
        self.total: int | None = None
        self.done_snapshot = 0
        self.tasks: dict[str, str] = {}
        self.index: dict[str, Any] = {}
        self.status = "…"

    @property
    def done(self) -> int:
        return max(self.done_snapshot, sum(s in FINISHED_TASK for s in self.tasks.values()))

    def label(self, task_id: Any) -> str:
        idx = self.index.get(str(task_id))
        return f"[task {idx}]" if idx is not None else f"[{task_id}]"

    def apply(self, event: dict[str, Any]) -> Text | None:
        """Update the counts; return a line worth printing, if the event has one."""
        kind, data = event["event"], event["data"]
        if kind in ("job", "end"):
            counts = task_counts(data)
            self.total = counts["total"] or self.total
            self.done_snapshot = sum(counts[s] for s in TERMINAL_TASK)
            self.status = str(data.get("status") or self.status)
            return None
        if kind == "task":
            task_id = str(data.get("task_id") or data.get("id"))
            self.index[task_id] = data.get("index", self.index.get(task_id))
            self.tasks[task_id] = str(data.get("status"))
            if data.get("status") == TaskStatus.FAILED:
                why = data.get("error") or f"exit code {data.get('exit_code')}"
                return Text(f"{self.label(task_id)} failed: {why}", style="red")
            return None
        who = self.label(data.get("task_id"))
        if kind == "output":
            text = str(data.get("text") or "").rstrip("\n")
            style = "yellow" if data.get("stream") == "stderr" else ""
            return Text.assemble((f"{who} ", "dim"), (text, style))
        if kind == "progress":
            return Text(
                f"{who} progress {json.dumps(data.get('progress'), default=str)}", style="cyan"
            )
        if kind == "result":
            return Text(f"{who} result (quality {data.get('result_quality')})", style="green")
        return None


def human_size(size: Any) -> str:
    """Bytes as ``12.3 MiB`` (blank when unknown)."""
    try:
        value = float(size)
    except (TypeError, ValueError):
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


def artifacts_table(artifacts: list[dict[str, Any]]) -> Table:
    ids = [str(a.get("id")) for a in artifacts]
    table = _table("ID", "FILENAME", "SIZE", "CREATED", whole={"ID": ids})
    for artifact in artifacts:
        table.add_row(
            str(artifact.get("id")),
            str(artifact.get("filename") or ""),
            human_size(artifact.get("size")),
            str(artifact.get("created_at") or ""),
        )
    return table


def artifact_line(artifact: dict[str, Any]) -> Text:
    """``art_… name (size, sha256 …)``: the id first and whole, to copy."""
    return Text.assemble(
        (str(artifact.get("id")), "bold"),
        f" {artifact.get('filename') or ''} ({human_size(artifact.get('size'))}, sha256 "
        f"{str(artifact.get('sha256') or '')[:12]}…)",
    )


def kv_table(keys: list[dict[str, Any]]) -> Table:
    names = [str(k.get("key")) for k in keys]
    table = _table("KEY", "VERSION", "UPDATED", whole={"KEY": names})
    for entry in keys:
        table.add_row(
            str(entry.get("key")),
            str(entry.get("version") or ""),
            str(entry.get("updated_at") or ""),
        )
    return table


def topup_receipt(receipt: dict[str, Any]) -> Panel:
    quote = receipt.get("quote") or {}
    entry = receipt.get("ledger_entry") or {}
    grid = _grid()
    grid.add_row("credited", Text(f"${entry.get('amount_usd', quote.get('amount_usd', '?'))}"))
    grid.add_row("quote", Text(str(quote.get("id") or "")))
    grid.add_row("payer", Text(str(quote.get("payer") or "")))
    grid.add_row("ledger entry", Text(str(entry.get("id") or "")))
    grid.add_row("available", Text(f"${receipt.get('available_usd', '?')}"))
    return Panel(grid, title="top-up paid", expand=False)
