"""Which queued tasks run next: priority within an account, round-robin across accounts.

Pure functions so the policy is unit-tested without Ray.
"""

from __future__ import annotations

import math
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
#: Work kept queued inside Ray beyond the CPUs, in seconds at the current completion rate:
#: enough that a CPU whose task ends starts the next one at once while the dispatcher gathers
#: completions into one cycle; little enough that a task arriving later (another account's, a
#: higher priority) waits behind at most this much already-launched work. Every cycle costs the
#: dispatcher, the event hub and each open stream a round, so the backlog sets how many attempts
#: share that cost: 1 s (about half settled per cycle) cost less head CPU per task than 0.5 s
#: (bench/README.md, "Engine design figures").
BACKLOG_S = 1.0


#: Fewer recent completions than this give no rate: the first few of a burst arrive in pairs
#: and clumps, and a rate read from them is as likely too low (a window long enough to drain
#: Ray's queue and idle the CPUs) as too high.
MIN_RATE_SAMPLES = 8


def completion_rate(completions: Sequence[float], now: float) -> float | None:
    """Completions per second over those within RATE_HORIZON_S of ``now`` (None: too few)."""
    recent = [t for t in completions if now - t <= RATE_HORIZON_S]
    if len(recent) < MIN_RATE_SAMPLES:
        return None
    span = recent[-1] - recent[0]
    return (len(recent) - 1) / span if span > 0 else None


def inflight_target(cluster_cpus: int, completions: Sequence[float], now: float, cap: int) -> int:
    """How many launched Ray tasks the dispatcher keeps in flight (at most ``cap``).

    One per CPU running plus a backlog queued inside Ray: BACKLOG_S of work at the current
    completion rate, and never less than one per CPU. Short tasks (many completions a second)
    get a deep backlog, so each dispatcher cycle launches and settles several; long tasks a
    shallow one, so later work is not stuck behind many launched hour-long tasks.
    """
    rate = completion_rate(completions, now) or 0.0
    backlog = max(cluster_cpus, math.ceil(rate * BACKLOG_S))
    return max(1, min(cap, cluster_cpus + backlog))


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
    rate = completion_rate(completions, now)
    if rate is None:
        return 0.0
    return min(MAX_BATCH_WINDOW_S, backlog / (2 * rate))
