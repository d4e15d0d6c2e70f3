"""Retry policy and outcome classification: one home, one vocabulary (SPEC §5.6, §6).

An attempt ends as ``completed``, ``cancelled``, or failed with a typed ``code``. A failed
attempt is retried while ``attempt <= max_retries``; infrastructure loss (``worker_lost``) is
retried on its own budget so a crashed node does not use up the user's retries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from computalot.jobs.merge import ResultError, extract_quality, split_batch_result
from computalot.jsonsafe import scrub

ACTIONS = {
    "spawn_failed": "check runner_command: the executable must exist in the pushed project or on "
    "the worker's PATH, and be executable",
    "exit_nonzero": "read GET /api/v1/jobs/:id/output for the error, fix the runner, resubmit",
    "timeout": "raise timeout_s, or split the work with fan_out so each task is shorter",
    "killed": "the runner was killed by a signal, often for using too much memory: raise "
    "requirements.memory_mb or use less memory",
    "invalid_result": "write one JSON object to $COMPUTALOT_TASK_RESULT (batched tasks: "
    '{"results": [one per element]})',
    "worker_lost": "the worker running the task was lost; resubmit the job",
    "cancelled": "resubmit the job if it was cancelled by mistake",
}


@dataclass
class Verdict:
    """What happens to a task after one attempt."""

    status: str  # completed | failed | cancelled
    code: str | None = None
    message: str | None = None
    infrastructure: bool = False
    result: Any = None
    quality: float | None = None
    warnings: list[str] = field(default_factory=list)

    def error(self) -> dict[str, Any] | None:
        if self.code is None:
            return None
        return {
            "code": self.code,
            "message": self.message,
            "recommended_action": ACTIONS.get(self.code, ""),
        }


def judge_outcome(outcome: dict[str, Any], *, batched: bool, element_count: int) -> Verdict:
    """Classify a ``run_task`` outcome and validate its result file."""
    status = outcome["status"]
    if status == "cancelled":
        return Verdict("cancelled", "cancelled", "cancelled by request")
    if status != "ok":
        code = status if status in ACTIONS else "exit_nonzero"
        message = outcome.get("error") or f"runner exited with code {outcome.get('exit_code')}"
        return Verdict("failed", code, message)
    state = outcome.get("result_state")
    warnings = list(outcome.get("artifact_warnings") or [])
    if state == "invalid":
        return Verdict("failed", "invalid_result", outcome.get("result_error"))
    if state == "missing":
        if batched:
            return Verdict(
                "failed", "invalid_result", "batched task exited 0 without writing a result file"
            )
        warnings.append("runner exited 0 without writing $COMPUTALOT_TASK_RESULT; result is null")
        return Verdict("completed", result=None, quality=1.0, warnings=warnings)
    value = outcome.get("result")
    marked = bool(outcome.get("result_needs_scrub"))  # NaN, lone surrogates to replace (rare)
    try:
        if batched:
            elements = []
            for item in split_batch_result(value, element_count):
                item, w_scrub = scrub(item) if marked else (item, [])
                clean, quality, w = extract_quality(item)
                elements.append({"result": clean, "quality": quality, "warnings": w_scrub + w})
            mean = sum(e["quality"] for e in elements) / len(elements) if elements else 1.0
            return Verdict(
                "completed", result={"elements": elements}, quality=mean, warnings=warnings
            )
        value, w_scrub = scrub(value) if marked else (value, [])
        clean, quality, w = extract_quality(value)
    except ResultError as exc:
        return Verdict("failed", "invalid_result", str(exc))
    return Verdict("completed", result=clean, quality=quality, warnings=warnings + w_scrub + w)


def infrastructure_loss(message: str) -> Verdict:
    return Verdict("failed", "worker_lost", message, infrastructure=True)


def should_retry(
    verdict: Verdict, *, attempt: int, max_retries: int, lost: int, lost_budget: int
) -> bool:
    """``attempt`` counts from 1; ``lost`` is how many attempts were lost to infrastructure."""
    if verdict.status != "failed":
        return False
    if verdict.infrastructure:
        return lost <= lost_budget
    user_attempts = attempt - lost
    return user_attempts <= max_retries
