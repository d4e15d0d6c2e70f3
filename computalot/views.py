"""Public answer shapes: what a job, task, event, output page or results page looks like.

One module for every caller: the API answers with these, and the engine writes a job's
snapshot into its events with :func:`job_out`, so an event and a ``GET /jobs/:id`` can never
disagree. Every field that can carry the engine's text (errors, warnings, output tails, live
feedback, event data) goes through ``computalot.redact`` here and nowhere else
(docs/llms-full.md, "Jobs", "Results", "Streaming (Server-Sent Events)").
"""

from __future__ import annotations

from typing import Any

from computalot.engine.placement import node_name
from computalot.jobs.fanout import task_payload
from computalot.redact import redact, redact_output, redact_value
from computalot.states import TERMINAL_JOB, TaskStatus
from computalot.store.models import Event, Job, Task
from computalot.timeutil import iso


def job_out(job: Job) -> dict[str, Any]:
    done = job.n_completed + job.n_failed + job.n_cancelled
    return {
        "id": job.id,
        "type": job.type,
        "recipe": job.recipe,
        "project": job.project_name,
        "revision_id": job.revision_id,
        "status": job.status,
        "priority": job.priority,
        "tags": job.tags,
        "depends_on": job.depends_on,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "timeout_s": job.timeout_s,
        "max_retries": job.max_retries,
        "requirements": job.requirements,
        "runner_command": job.spec.get("runner_command"),
        "fan_out": {"kind": job.spec.get("kind"), "elements": job.spec.get("element_count")},
        # sweep / map_reduce / benchmark: what the aggregate is built from (``jobs.workflows``).
        "workflow": job.spec.get("workflow"),
        "task_counts": {
            "total": job.n_total,
            "queued": job.n_queued,
            "running": job.n_running,
            "completed": job.n_completed,
            "failed": job.n_failed,
            "cancelled": job.n_cancelled,
        },
        "progress": round(done / job.n_total, 6) if job.n_total else 0.0,
        "error": redact_value(job.error),
        "recommended_action": _text(job.recommended_action),
        "warnings": redact_value(job.warnings),
        "cost": {"held_usd": float(job.held_usd), "charged_usd": float(job.charged_usd)},
        "meta": job.meta,
        "variant": job.variant,
    }


def task_out(job: Job, task: Task) -> dict[str, Any]:
    tail = redact_output(task.output_tail or "")
    return {
        "id": task.id,
        "job_id": task.job_id,
        "index": task.index,
        "status": task.status,
        "attempt": task.attempt,
        "elements": {"start": task.element_start, "count": task.element_count},
        "payload": task_payload(job, task),
        "started_at": iso(task.started_at),
        "finished_at": iso(task.finished_at),
        "duration_s": task.duration_s,
        "exit_code": task.exit_code,
        "error": redact_value(task.error),
        "output": tail,
        "latest_progress": redact_value(task.latest_progress),
        "live_feedback": {"output_tail": tail},
        "result_quality": task.result_quality,
        "result_warnings": redact_value(task.result_warnings or []),
        "artifacts": task.artifacts or [],
        "checkpoint": checkpoint_out(task.checkpoint),
        "cached": task.cached_from is not None,
        "cached_from": task.cached_from,
        "node": node_name(task.node_id),
    }


def checkpoint_out(value: Any) -> dict[str, Any] | None:
    """The task's latest saved checkpoint (``engine.checkpoints``): size, attempt, saved_at;
    never its blob key."""
    if not isinstance(value, dict) or "key" not in value:
        return None
    return {name: value.get(name) for name in ("size", "attempt", "saved_at")}


def output_out(task: Task) -> dict[str, Any]:
    """A task's output: while an attempt runs, its live tail; until it prints, the last
    attempt's text."""
    live = task.status == TaskStatus.RUNNING and task.output_attempt == task.attempt
    return {
        "task_id": task.id,
        "index": task.index,
        "attempt": task.output_attempt or task.attempt,
        "status": task.status,
        "stdout": redact_output((task.output_tail or "") if live else (task.stdout or "")),
        "stderr": "" if live else redact_output(task.stderr or ""),
        "live": live,
    }


def event_data(data: Any) -> Any:
    """An event's stored data as an answer or a stream frame shows it."""
    return redact_value(data)


def event_out(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "job_id": event.job_id,
        "event": event.event,
        "data": event_data(event.data),
        "created_at": iso(event.created_at),
    }


def element_out(element: dict[str, Any]) -> dict[str, Any]:
    """One element of a results page (``store.results.element_results``): its warnings may
    quote the engine."""
    warnings = element.get("result_warnings")
    if warnings:
        element["result_warnings"] = redact_value(warnings)
    return element


def results_out(
    job: Job,
    results: list[dict[str, Any]],
    next_cursor: str | None,
    counts: dict[str, int],
    aggregate: Any,
    aggregate_omitted: dict[str, Any] | None,
) -> dict[str, Any]:
    """A results page. ``counts``: elements per status, so batching never shows in the summary
    (docs/llms-full.md, "Results"). ``aggregate_omitted`` says why a finished job's first page
    has no aggregate (``jobs.aggregate``)."""
    duration = None
    if job.started_at and job.finished_at:
        duration = round((job.finished_at - job.started_at).total_seconds(), 3)
    total = sum(counts.values())
    completed, failed, cancelled = (
        counts.get(status, 0)
        for status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)
    )
    done = completed + failed + cancelled
    return {
        "job_id": job.id,
        "status": job.status,
        "summary": {
            "total": total,
            "completed": completed,
            "failed": failed,
            "cancelled": cancelled,
            "duration_s": duration,
        },
        "completeness": round(completed / total, 6) if total else 0.0,
        "finished": job.status in TERMINAL_JOB,
        "progress": round(done / total, 6) if total else 0.0,
        "aggregate_result": aggregate,
        "aggregate_omitted": aggregate_omitted,
        "error": redact_value(job.error),
        "recommended_action": _text(job.recommended_action),
        "results": [element_out(element) for element in results],
        "next_cursor": next_cursor,
        # Every completed element's result and every ended attempt's output tails are written
        # to the store in the transaction that records the attempt; nothing is kept elsewhere.
        "result_persisted": True,
        "output_persisted": True,
        "warnings": redact_value(job.warnings),
        "meta": job.meta,
        "variant": job.variant,
    }


def _text(value: str | None) -> str | None:
    return redact(value) if value else value


__all__ = [
    "element_out",
    "event_data",
    "event_out",
    "job_out",
    "output_out",
    "results_out",
    "task_out",
]
