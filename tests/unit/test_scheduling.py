import math
from datetime import UTC, datetime, timedelta

from computalot.engine.scheduling import (
    BACKLOG_S,
    MAX_BATCH_WINDOW_S,
    MIN_RATE_SAMPLES,
    RATE_HORIZON_S,
    Demand,
    allocate,
    batch_window,
    completion_rate,
    inflight_target,
    rotate,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def demand(job: str, account: str, queued: int, priority: str = "normal", age: int = 0) -> Demand:
    return Demand(job, account, priority, T0 + timedelta(seconds=age), queued)


def test_big_job_does_not_starve_other_account() -> None:
    grants = allocate([demand("big", "a", 100_000), demand("small", "b", 1)], 4, [])
    assert grants == {"big": 3, "small": 1}


def test_priority_within_account_then_age() -> None:
    demands = [
        demand("old-low", "a", 5, "low", 0),
        demand("new-high", "a", 2, "high", 10),
        demand("normal", "a", 5, "normal", 5),
    ]
    assert allocate(demands, 4, []) == {"new-high": 2, "normal": 2}


def test_never_grants_more_than_queued_or_free() -> None:
    grants = allocate([demand("j1", "a", 2), demand("j2", "b", 1)], 10, [])
    assert grants == {"j1": 2, "j2": 1}
    assert allocate([demand("j1", "a", 2)], 0, []) == {}


def test_rotation_starts_with_accounts_not_served_last() -> None:
    demands = [demand("ja", "a", 5), demand("jb", "b", 5)]
    assert allocate(demands, 1, ["b", "a"]) == {"jb": 1}
    assert allocate(demands, 1, rotate(["b", "a"], ["b"])) == {"ja": 1}


def test_batch_window_waits_only_while_ray_holds_a_backlog() -> None:
    ten_per_s = [i * 0.1 for i in range(11)]
    now = ten_per_s[-1]
    assert batch_window(2, 2, ten_per_s, now) == 0.0  # every launched task has a CPU
    assert batch_window(1, 4, ten_per_s, now) == 0.0
    assert batch_window(12, 2, [5.0], 5.0) == 0.0  # no rate yet
    assert batch_window(12, 2, [5.0, 5.0], 5.0) == 0.0
    # 10 queued in Ray at 10 completions/s: wait for half of them (0.5 s)
    assert abs(batch_window(12, 2, ten_per_s, now) - 0.5) < 1e-9
    # a long backlog at a modest rate is capped, so a cycle still runs at least once a second
    assert batch_window(100, 2, ten_per_s, now) == MAX_BATCH_WINDOW_S
    # a big fast cluster: 108 queued at 1,000/s -> 54 ms
    fast = [i / 1000 for i in range(64)]
    assert abs(batch_window(208, 100, fast, fast[-1]) - 0.054) < 1e-6


def test_rate_needs_enough_recent_completions() -> None:
    # the first completions of a burst come in clumps: no rate (so no wait) until there are
    # MIN_RATE_SAMPLES of them
    clump = [10.0, 10.001, 10.035, 10.036]
    assert completion_rate(clump, 10.04) is None
    assert batch_window(20, 2, clump, 10.04) == 0.0
    steady = [10.0 + i * 0.02 for i in range(MIN_RATE_SAMPLES)]
    assert abs(completion_rate(steady, steady[-1]) - 50.0) < 1e-6  # type: ignore[operator]


def test_batch_window_ignores_completions_of_an_earlier_burst() -> None:
    # 61 completions a minute ago at 10/s, then a new job completing 20/s: its rate counts, not
    # the average over the pause (which made the window 1 s and left the CPUs idle).
    old = [i * 0.1 for i in range(61)]
    new = [66.0 + i * 0.05 for i in range(MIN_RATE_SAMPLES)]
    assert abs(batch_window(12, 2, old + new, new[-1]) - 10 / (2 * 20)) < 1e-9
    # a slow trickle (one completion in the horizon): no wait
    assert batch_window(100, 2, [0.0, 10.0], 10.0) == 0.0
    assert RATE_HORIZON_S < 10.0


def test_inflight_target_follows_the_completion_rate() -> None:
    # no rate yet (a new burst, long tasks): one running and one queued per CPU
    assert inflight_target(2, [], 0.0, cap=40) == 4
    assert inflight_target(100, [], 0.0, cap=1000) == 200
    # 50 completions/s on 2 CPUs: BACKLOG_S of work queued beyond the CPUs
    steady = [i * 0.02 for i in range(40)]
    expected = 2 + math.ceil(50 * BACKLOG_S)
    assert inflight_target(2, steady, steady[-1], cap=1000) == expected
    # never beyond the cap (back-pressure), never below one
    assert inflight_target(2, steady, steady[-1], cap=10) == 10
    assert inflight_target(1, [], 0.0, cap=1) == 1
    # slower tasks keep the backlog at one per CPU: 1 s tasks on 4 CPUs (4 completions/s), and
    # one every 10 s (which never has MIN_RATE_SAMPLES within the horizon, so no rate at all)
    assert BACKLOG_S <= 1.0
    four_per_s = [i * 0.25 for i in range(MIN_RATE_SAMPLES)]
    assert inflight_target(4, four_per_s, four_per_s[-1], cap=1000) == 8
    every_10_s = [i * 10.0 for i in range(20)]
    assert inflight_target(2, every_10_s, every_10_s[-1], cap=1000) == 4
