"""When the dispatcher force-stops an attempt (computalot.engine.inflight.stops_due)."""

from __future__ import annotations

from computalot.engine.inflight import CANCEL_SLACK_S, Inflight, stops_due


def _info(deadline: float = 100.0) -> Inflight:
    return Inflight("t", "j", "a", 1, ref=None, started=0.0, deadline=deadline)


def test_nothing_due_before_deadline_and_without_cancel() -> None:
    assert stops_due([_info()], now=99.0) == []


def test_past_deadline_is_a_backstop_once() -> None:
    info = _info(deadline=100.0)
    assert stops_due([info], now=100.5) == [info]
    assert info.backstop and not info.forced
    assert stops_due([info], now=200.0) == []  # stopped once only


def test_cancel_that_did_not_land_is_forced_after_grace_and_slack() -> None:
    info = _info(deadline=1000.0)
    info.mark_cancel_sent(now=10.0, kill_grace_s=5.0)
    assert stops_due([info], now=10.0 + 5.0 + CANCEL_SLACK_S - 0.1) == []
    assert stops_due([info], now=10.0 + 5.0 + CANCEL_SLACK_S + 0.1) == [info]
    assert info.forced and not info.backstop
    assert stops_due([info], now=999.0) == []


def test_deadline_wins_over_a_pending_cancel() -> None:
    """Past its deadline the outcome is a timeout, even if a cancel was also sent."""
    info = _info(deadline=50.0)
    info.mark_cancel_sent(now=45.0, kill_grace_s=5.0)
    assert stops_due([info], now=51.0) == [info]
    assert info.backstop and not info.forced
