"""Job and task states: the one vocabulary of the lifecycle (docs/llms-full.md, "Lifecycle").

A job goes ``planning → queued → running → completed | partial | failed | cancelled``; a task
``queued → running → completed | failed | cancelled``. Terminal states are final: every status
change is a compare-and-set in the store. The members are ``str`` subclasses, so they compare
equal to the plain strings stored in the database and travel in JSON unchanged.

This module imports nothing: the store, the engine, the API and the SDK all read it.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    PLANNING = "planning"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def is_terminal(self) -> bool:
        return self in TERMINAL_JOB


class TaskStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def is_terminal(self) -> bool:
        return self in TERMINAL_TASK


TERMINAL_JOB: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETED, JobStatus.PARTIAL, JobStatus.FAILED, JobStatus.CANCELLED}
)
#: A job that has not ended: it holds quota and keeps its project from being deleted.
OPEN_JOB: frozenset[JobStatus] = frozenset(JobStatus) - TERMINAL_JOB
TERMINAL_TASK: frozenset[TaskStatus] = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED}
)


def job_is_terminal(status: str) -> bool:
    """Whether a stored job status (a plain string) is final."""
    return status in TERMINAL_JOB
