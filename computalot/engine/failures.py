"""Judging an attempt that ended with an exception instead of an :class:`Outcome`.

``run_task`` turns its own interruption (a Ray cancel raises ``KeyboardInterrupt`` in it) into a
``cancelled`` outcome, so an exception here means the attempt never returned: it was cancelled
before it started or force-stopped (``TaskCancelledError``), or its worker, node or object was
lost. The classification is by exception type, never by searching messages.
"""

from __future__ import annotations

from ray.exceptions import (
    LocalRayletDiedError,
    NodeDiedError,
    ObjectLostError,
    OutOfMemoryError,
    RayActorError,
    RayTaskError,
    RuntimeEnvSetupError,
    TaskCancelledError,
    WorkerCrashedError,
)

from computalot.engine.claiming import UnreadableTask
from computalot.engine.inflight import Inflight
from computalot.engine.outcomes import (
    Verdict,
    cancelled,
    infrastructure_loss,
    timed_out,
    unplaceable,
)
from computalot.engine.record_queue import UnstorableOutcome
from computalot.states import TaskStatus

#: Ray's ways of losing an attempt's worker, node or result: retried on the infrastructure
#: budget (``worker_lost``). Any other exception (a failed launch, an error in ``run_task``
#: itself) is judged the same way, named by its type.
WORKER_LOSS: tuple[type[BaseException], ...] = (
    WorkerCrashedError,
    NodeDiedError,
    LocalRayletDiedError,
    OutOfMemoryError,
    ObjectLostError,
    RayActorError,
    RuntimeEnvSetupError,
)


def interrupted(exc: BaseException) -> bool:
    """A cancel that reached the attempt: Ray's own error, or the interrupt it raised."""
    if isinstance(exc, TaskCancelledError | KeyboardInterrupt):
        return True
    return isinstance(exc, RayTaskError) and isinstance(exc.cause, KeyboardInterrupt)


def judge_failure(
    info: Inflight, exc: BaseException, timeout_s: int, node_wait_s: float = 0.0
) -> Verdict:
    """The verdict on an attempt whose ``run_task`` raised ``exc`` (or was never launched);
    ``node_wait_s``: how long an unplaceable one waited for a node (``engine.placement``)."""
    if isinstance(exc, UnstorableOutcome):
        message = f"the attempt's outcome could not be stored: {exc}"
        return Verdict(TaskStatus.FAILED, "invalid_result", message)
    if isinstance(exc, UnreadableTask):
        return Verdict(TaskStatus.FAILED, "unreadable_task", str(exc))
    # A worker we force-stopped may surface as TaskCancelledError or as a crashed worker.
    if info.backstop:
        return timed_out(timeout_s)
    if info.unplaceable:
        return unplaceable(info.lost_before, node_wait_s)
    if info.forced or interrupted(exc):
        return cancelled()
    kind = "worker lost" if isinstance(exc, WORKER_LOSS) else "attempt lost"
    return infrastructure_loss(f"{kind}: {type(exc).__name__}: {str(exc)[:300]}")
