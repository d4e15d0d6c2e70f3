"""Planning through the API: a big fan-out answers ``planning`` at once with its full task
count, becomes ``queued`` with a ``job`` event once its rows are written, and runs; a job
cancelled while planning keeps no queued task; a small job still answers ``queued``."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.helpers import events_of, submit_job, wait_for, wait_job

API = "/api/v1"
RUNNER = r"""
import json, os, time
p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
gate = p.get("gate")
while gate and not os.path.exists(gate):
    time.sleep(0.05)
json.dump({"n": p.get("n")}, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))
"""
BIG = 12_000  # over the default 1,000 written in the request, under the session's quota


@pytest.fixture(scope="module")
def client(new_account: Any) -> httpx.Client:
    return new_account()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def project(client: httpx.Client, make_project: Any) -> str:
    return str(make_project(client, {"runner.py": RUNNER}))


def fan_out(project: str, n: int, **fields: Any) -> dict[str, Any]:
    return {
        "project": project,
        "runner_command": ["python3", "runner.py"],
        "fan_out": {"by": "n"},
        "payload": {"n": list(range(n))},
        **fields,
    }


def test_a_big_fan_out_answers_planning_then_is_queued(
    client: httpx.Client, project: str, task_tmp: Path
) -> None:
    blocker = submit_job(client, project, payload={"gate": str(task_tmp / "gate")})
    t0 = time.monotonic()
    answer = client.post(f"{API}/jobs", json=fan_out(project, BIG, depends_on=[blocker]))
    answered_s = time.monotonic() - t0
    assert answer.status_code == 201, answer.text
    job = answer.json()
    assert job["status"] == "planning"
    assert job["task_counts"]["total"] == BIG
    assert answered_s < 5.0  # writing 12,000 rows in the request took longer
    seen = client.get(f"{API}/jobs/{job['id']}").json()
    assert seen["status"] in ("planning", "queued") and seen["task_counts"]["total"] == BIG

    def queued() -> Any:
        now = client.get(f"{API}/jobs/{job['id']}").json()
        return now if now["status"] != "planning" else None

    now = wait_for(queued, "the job to leave planning", timeout_s=120)
    assert now["status"] == "queued"
    assert now["task_counts"]["queued"] == BIG
    statuses = [
        e["data"].get("status") for e in events_of(client, job["id"]) if e["event"] == "job"
    ]
    assert statuses[:1] == ["queued"]
    last = client.get(f"{API}/jobs/{job['id']}/tasks", params={"cursor": None, "limit": 1000})
    assert last.status_code == 200
    client.put(f"{API}/jobs/{blocker}/cancel")
    ended = wait_job(client, job["id"], timeout_s=120)
    assert ended["status"] == "failed" and ended["error"]["code"] == "dependency_failed"
    left = client.get(f"{API}/jobs/{job['id']}/tasks", params={"status": "queued"}).json()
    assert left["tasks"] == []


def test_a_job_cancelled_while_planning_keeps_no_queued_task(
    client: httpx.Client, project: str
) -> None:
    answer = client.post(f"{API}/jobs", json=fan_out(project, BIG))
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["id"]
    assert answer.json()["status"] == "planning"
    cancelled = client.put(f"{API}/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    # The answer is already consistent: the total is the rows written before the cancel.
    at_cancel = cancelled.json()
    assert at_cancel["status"] == "cancelled"
    counts = at_cancel["task_counts"]
    assert counts["queued"] == 0 and counts["total"] <= BIG
    assert (
        counts["running"] + counts["completed"] + counts["cancelled"] + counts["failed"]
        == (counts["total"])
    )

    def settled() -> Any:
        job = client.get(f"{API}/jobs/{job_id}").json()
        queued = client.get(f"{API}/jobs/{job_id}/tasks", params={"status": "queued"}).json()
        return job if job["status"] == "cancelled" and not queued["tasks"] else None

    job = wait_for(settled, "the cancelled job to keep no queued task", timeout_s=60)
    counts = job["task_counts"]
    assert counts["total"] <= BIG
    assert counts["queued"] == 0
    assert (
        counts["running"] + counts["completed"] + counts["cancelled"] + counts["failed"]
        == (counts["total"])
    )


def test_a_small_job_still_answers_queued(client: httpx.Client, project: str) -> None:
    answer = client.post(f"{API}/jobs", json=fan_out(project, 3))
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "queued"
    assert wait_job(client, answer.json()["id"])["status"] == "completed"


def test_a_dead_planners_job_is_taken_over_by_a_replicas_sweep(
    client: httpx.Client, project: str, platform: Any, task_tmp: Path
) -> None:
    """The replica's planner loses its lease mid-job (as if its process died): it stops at its
    next chunk, and the sweep the Serve replica runs takes the job over and writes the rest,
    each row once."""
    db = Path(platform.settings.data_dir) / "computalot.db"
    blocker = submit_job(client, project, payload={"gate": str(task_tmp / "gate")})
    steal = (
        "UPDATE jobs SET planner_id = 'dead-planner', "
        "planner_lease_until = '2000-01-01 00:00:00.000000' WHERE id = ? AND status = 'planning'"
    )
    for _attempt in range(3):
        answer = client.post(f"{API}/jobs", json=fan_out(project, BIG, depends_on=[blocker]))
        assert answer.status_code == 201, answer.text
        job_id = answer.json()["id"]
        with sqlite3.connect(db, timeout=30) as conn:
            stolen = conn.execute(steal, (job_id,)).rowcount
        if stolen:
            break
        client.put(f"{API}/jobs/{job_id}/cancel")  # planned before the lease could be taken
    assert stolen, "every job was planned before its lease could be taken"

    def planned() -> Any:
        now = client.get(f"{API}/jobs/{job_id}").json()
        return now if now["status"] != "planning" else None

    job = wait_for(planned, "a replica's sweep to finish the planning", timeout_s=90)
    assert job["status"] == "queued" and job["task_counts"]["total"] == BIG
    with sqlite3.connect(db, timeout=30) as conn:
        rows = conn.execute(
            'SELECT count(*), count(DISTINCT "index"), min("index"), max("index") '
            "FROM tasks WHERE job_id = ?",
            (job_id,),
        ).fetchone()
        planner = conn.execute("SELECT planner_id FROM jobs WHERE id = ?", (job_id,)).fetchone()
    assert tuple(rows) == (BIG, BIG, 0, BIG - 1)
    assert planner == (None,)
    for done in (job_id, blocker):
        assert client.put(f"{API}/jobs/{done}/cancel").status_code == 200
