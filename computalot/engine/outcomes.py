"""Retry policy and outcome classification: one home, one vocabulary (docs/llms-full.md,
"Timeouts, retries and cancel" and "Runner protocol").

An attempt ends as ``completed``, ``cancelled``, or failed with a typed ``code``. A failed
attempt is retried while ``attempt <= max_retries``; infrastructure loss (``worker_lost``) is
retried on its own budget so a crashed node does not use up the user's retries; a result over
its size limit (``result_too_large``) is never retried: another run writes as much again; nor is
an attempt no alive node could take (``node_lost``, ``unsatisfiable_requirements``:
``engine.placement``).

Results arrive already checked and written as JSON text by the task's worker
(``engine.result_file``): judging an attempt never decodes its result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from computalot.engine.attempt import Outcome
from computalot.sandbox.limits import LIMIT_ACTIONS
from computalot.states import TaskStatus
from computalot.store.jsoncodec import RawJSON

ACTIONS = {
    "unreadable_task": "resubmit the job with payload elements nested at most 100 levels deep",
    "spawn_failed": "check runner_command: the executable must exist in the pushed project or on "
    "the worker's PATH, and be executable",
    "exit_nonzero": "read GET /api/v1/jobs/:id/output for the error, fix the runner, resubmit",
    "timeout": "raise timeout_s, or split the work with fan_out so each task is shorter",
    "killed": "the runner was killed by a signal, often for using too much memory: raise "
    "requirements.memory_mb or use less memory",
    "invalid_result": "write one JSON object to $COMPUTALOT_TASK_RESULT (batched tasks: "
    '{"results": [one per element]})',
    "result_too_large": "write big outputs as files in $COMPUTALOT_ARTIFACT_DIR (they become "
    "the task's artifacts) and keep the result file to a summary",
    "worker_lost": "the worker running the task was lost; resubmit the job",
    "node_lost": "the node running the task was lost and no alive node offers the task's "
    "requirements: resubmit the job once such a node is back (GET /api/v1/presets lists what "
    "the cluster offers), or lower requirements",
    "unsatisfiable_requirements": "no alive node offers the task's requirements: lower "
    "requirements (or pick a preset from GET /api/v1/presets) and resubmit",
    "input_unavailable": "check the job's _artifacts.download and the manifest's data_sources: "
    "each artifact must still exist (GET /api/v1/artifacts/:id/meta) and its path must not "
    "cross a directory or link of the revision",
    "cancelled": "resubmit the job if it was cancelled by mistake",
    "init_failed": "fix the project's runtime.init.commands or validation check the message "
    "names (GET /api/v1/projects/:name/status/details shows its output), push, resubmit",
    "invalid_input": "fix the payload field or input artifact the message names (GET "
    "/api/v1/recipes/:name has the schema), then resubmit",
    "recipe_error": "the recipe failed on this input: report it with POST /api/v1/feedback "
    "quoting the job id",
    **LIMIT_ACTIONS,
}


#: Failures that another attempt would repeat (an unplaceable attempt: another one would wait
#: for a node just as long, ``engine.placement``).
NOT_RETRIED = frozenset({"result_too_large", "node_lost", "unsatisfiable_requirements"})


@dataclass
class Verdict:
    """What happens to a task after one attempt. ``result`` is the JSON text to store."""

    status: TaskStatus  # completed | failed | cancelled
    code: str | None = None
    message: str | None = None
    infrastructure: bool = False
    result: RawJSON | None = None
    quality: float | None = None
    warnings: list[str] = field(default_factory=list)
    result_bytes: int = 0  # UTF-8 bytes of the result
    #: A big result's UTF-8 bytes (a buffer in Ray's object store) instead of ``result``.
    result_data: Any = None

    def error(self) -> dict[str, Any] | None:
        if self.code is None:
            return None
        return {
            "code": self.code,
            "message": self.message,
            "recommended_action": ACTIONS.get(self.code, ""),
        }


def judge_outcome(outcome: Outcome, text: str | Any = None) -> Verdict:
    """Classify a ``run_task`` outcome; ``text``: a big result, the attempt's second return
    value (its UTF-8 bytes, or a ``str``); a small one is in the outcome."""
    if outcome.status == TaskStatus.CANCELLED:
        return cancelled()
    if outcome.status != "ok":
        code = outcome.status if outcome.status in ACTIONS else "exit_nonzero"
        message = outcome.error or f"runner exited with code {outcome.exit_code}"
        return Verdict(TaskStatus.FAILED, code, message)
    if outcome.result_state != "ok":
        code = outcome.result_code or "invalid_result"
        return Verdict(TaskStatus.FAILED, code, outcome.result_error or "no result was read")
    text = outcome.result_text if text is None else text
    if text is None:
        return Verdict(
            TaskStatus.FAILED, "invalid_result", "the result's text did not reach the dispatcher"
        )
    return Verdict(
        TaskStatus.COMPLETED,
        result=RawJSON(text) if isinstance(text, str) else None,
        quality=outcome.result_quality,
        warnings=[*outcome.artifact_warnings, *outcome.result_warnings],
        result_bytes=outcome.result_bytes,
        result_data=None if isinstance(text, str) else text,
    )


def cancelled() -> Verdict:
    return Verdict(TaskStatus.CANCELLED, "cancelled", "cancelled by request")


def timed_out(timeout_s: float) -> Verdict:
    return judge_outcome(Outcome(status="timeout", error=f"timed out after {timeout_s} s"))


def result_too_large(message: str) -> Verdict:
    return Verdict(TaskStatus.FAILED, "result_too_large", message)


def infrastructure_loss(message: str) -> Verdict:
    return Verdict(TaskStatus.FAILED, "worker_lost", message, infrastructure=True)


def unplaceable(node_lost: bool, wait_s: float) -> Verdict:
    """An attempt no alive node could take within ``wait_s`` seconds (``engine.placement``):
    ``node_lost`` when an earlier attempt was lost with its node, else
    ``unsatisfiable_requirements``."""
    if node_lost:
        message = (
            "the node running the task was lost and no alive node offering its requirements "
            f"joined within {wait_s:g} s"
        )
        return Verdict(TaskStatus.FAILED, "node_lost", message)
    message = f"no alive node offers the task's requirements (waited {wait_s:g} s)"
    return Verdict(TaskStatus.FAILED, "unsatisfiable_requirements", message)


def should_retry(
    verdict: Verdict, *, attempt: int, max_retries: int, lost: int, lost_budget: int
) -> bool:
    """``attempt`` counts from 1; ``lost`` is how many attempts were lost to infrastructure."""
    if verdict.status != TaskStatus.FAILED or verdict.code in NOT_RETRIED:
        return False
    if verdict.infrastructure:
        return lost <= lost_budget
    user_attempts = attempt - lost
    return user_attempts <= max_retries
