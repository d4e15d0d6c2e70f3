from datetime import UTC, datetime, timedelta

from computalot.engine.scheduling import Demand, allocate, rotate

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
