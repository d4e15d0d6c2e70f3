"""Fairness across accounts (docs/operating.md, "How it fits together"): real local Ray, real HTTP, real runners."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.helpers import submit_job, wait_for, wait_job

#: It counts which tasks ran first: it runs on a quiet host (tests/support/beside.py).
pytestmark = pytest.mark.quiet_host

API = "/api/v1"

RUNNER = r"""
import json, os
payload = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
json.dump({"payload": payload}, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))
"""


def test_another_accounts_job_is_not_queued_behind_a_big_fan_out(
    new_account: Any, make_project: Any
) -> None:
    """While account A's 300 short tasks keep every CPU busy, account B's one-task job gets the
    next free slot and runs behind at most the backlog already launched into Ray (about a second
    of A's work), not behind A's whole job."""
    a, b = new_account("member"), new_account("member")
    small_project = make_project(b, {"runner.py": RUNNER})  # pushed before, not during, A's job
    big = submit_job(
        a, make_project(a, {"runner.py": RUNNER}), fan_out={"items": [{"i": i} for i in range(300)]}
    )
    wait_for(
        lambda: a.get(f"{API}/jobs/{big}").json()["task_counts"]["completed"] >= 30,
        "the big job to make progress",
        120,
    )
    small = submit_job(b, small_project, payload={"x": 1})
    assert wait_job(b, small)["status"] == "completed"
    (small_task,) = b.get(f"{API}/jobs/{small}/tasks").json()["tasks"]
    assert wait_job(a, big)["status"] == "completed"
    tasks = a.get(f"{API}/jobs/{big}/tasks", params={"limit": 500}).json()["tasks"]
    assert len(tasks) == 300
    # Counted from the tasks' own start times, so a slow poll or a busy host changes nothing:
    # first come, first served would have started B's task only after every one of A's.
    after = [t for t in tasks if t["started_at"] > small_task["started_at"]]
    assert len(after) >= 75, (len(after), small_task["started_at"])
