"""Which queued tasks run next: priority within an account, round-robin across accounts.

Pure functions so the policy is unit-tested without Ray.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from computalot.schemas.jobs import PRIORITY_RANK


@dataclass(frozen=True)
class Demand:
    job_id: str
    account_id: str
    priority: str
    created_at: datetime
    queued: int


def allocate(demands: list[Demand], free: int, rotation: list[str]) -> dict[str, int]:
    """Split ``free`` launch slots over jobs.

    Accounts take turns one slot at a time (starting after the account served last, per
    ``rotation``), so a 100,000-task job cannot starve another account's single task; within an
    account, ``high`` before ``normal`` before ``low``, then oldest job first.
    """
    if free <= 0 or not demands:
        return {}
    per_account: OrderedDict[str, list[Demand]] = OrderedDict()
    order = {acct: i for i, acct in enumerate(rotation)}
    for d in sorted(demands, key=lambda d: (order.get(d.account_id, -1), d.account_id)):
        per_account.setdefault(d.account_id, []).append(d)
    queues = {
        acct: sorted(jobs, key=lambda d: (PRIORITY_RANK.get(d.priority, 1), d.created_at, d.job_id))
        for acct, jobs in per_account.items()
    }
    remaining = {d.job_id: d.queued for d in demands}
    grants: dict[str, int] = {}
    active = list(queues)
    while free > 0 and active:
        still: list[str] = []
        for acct in active:
            if free == 0:
                still.append(acct)
                continue
            jobs = queues[acct]
            while jobs and remaining[jobs[0].job_id] == 0:
                jobs.pop(0)
            if not jobs:
                continue
            job = jobs[0]
            grants[job.job_id] = grants.get(job.job_id, 0) + 1
            remaining[job.job_id] -= 1
            free -= 1
            still.append(acct)
        active = still
    return grants


def rotate(rotation: list[str], served: list[str]) -> list[str]:
    """Move accounts just served to the back, so the next cycle starts with the others."""
    served_set = set(served)
    return [a for a in rotation if a not in served_set] + [a for a in served if a in served_set]


MAX_BATCH_WINDOW_S = 1.0
#: Only completions this recent measure the rate: older ones (an earlier job, a pause between
#: jobs) would make it look slow and the window long enough to leave CPUs idle.
RATE_HORIZON_S = 2.0


def batch_window(
    inflight: int, cluster_cpus: int, completions: Sequence[float], now: float
) -> float:
    """How long the dispatcher may wait before its next cycle while Ray works through launched
    tasks (seconds).

    Tasks beyond the cluster's CPUs are queued inside Ray; waiting for half of that backlog to
    complete (at the current completion rate: ``completions``' monotonic times within
    RATE_HORIZON_S of ``now``) cannot leave a CPU idle, and lets one cycle settle several
    attempts. No backlog (a lone job, the last tasks of one) or no current rate → no wait.
    """
    backlog = inflight - cluster_cpus
    if backlog <= 0:
        return 0.0
    recent = [t for t in completions if now - t <= RATE_HORIZON_S]
    if len(recent) < 2:
        return 0.0
    span = recent[-1] - recent[0]
    if span <= 0:
        return 0.0
    rate = (len(recent) - 1) / span
    return min(MAX_BATCH_WINDOW_S, backlog / (2 * rate))
