"""The dispatcher's record of one launched attempt, and when it must be stopped by force.

``run_task`` enforces ``timeout_s`` and honours a cancel itself (a Ray cancel interrupts it, it
stops the command's process group and returns). Force-killing the worker is the safety net for
when that does not happen: a worker that stopped answering past its deadline, or a cancel that
did not take effect within the kill grace and some slack.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
    from ray import ObjectRef

    from computalot.engine.attempt import Outcome

#: After a cancel was sent: how long beyond the kill grace the attempt may take to end.
CANCEL_SLACK_S = 10.0


@dataclass
class Inflight:
    task_id: str
    job_id: str
    account_id: str
    attempt: int
    ref: ObjectRef[Outcome] | None  # None: the launch failed
    started: float
    deadline: float  # monotonic: timeout_s + kill grace + slack after launch
    cancel_sent: bool = False
    cancel_deadline: float = float("inf")  # monotonic: set when the cancel is sent
    backstop: bool = False  # force-stopped past ``deadline``: judged a timeout
    forced: bool = False  # force-stopped because the cancel did not land: judged cancelled
    #: run_task's second return (a big result's text); dropped once recorded
    text_ref: ObjectRef[NDArray[np.uint8] | None] | None = None
    #: The node resources it needs (``placement.resources_key``); an earlier attempt of the
    #: task was lost with its worker or node (``lost_before``); it was stopped because no alive
    #: node offered them for ``node_wait_s`` (``unplaceable``: judged ``node_lost`` or
    #: ``unsatisfiable_requirements``).
    resources_key: str = ""
    lost_before: bool = False
    unplaceable: bool = False

    def mark_cancel_sent(self, now: float, kill_grace_s: float) -> None:
        self.cancel_sent = True
        self.cancel_deadline = now + kill_grace_s + CANCEL_SLACK_S


def stops_due(inflight: Iterable[Inflight], now: float) -> list[Inflight]:
    """Attempts to force-stop now; each is marked so it is stopped only once.

    Past its deadline an attempt is marked ``backstop`` (its outcome is a timeout); a cancel
    past its own deadline is marked ``forced`` (its outcome stays "cancelled").
    """
    due = []
    for info in inflight:
        if info.backstop or info.forced:
            continue
        if now > info.deadline:
            info.backstop = True
        elif info.cancel_sent and now > info.cancel_deadline:
            info.forced = True
        else:
            continue
        due.append(info)
    return due
