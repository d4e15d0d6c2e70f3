"""Failures with real processes: retries, timeouts, cancels, a killed dispatcher, dependencies.

Every runner is a real subprocess of a real Ray worker, in its sandbox. Runners that must be
stopped start children whose command lines carry a marker and write it to a shared directory;
the tests find their host pids by it and prove with ``/proc`` that nothing survives a timeout or
a cancel (real pids prove it).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from computalot.engine.inflight import CANCEL_SLACK_S
from tests.support.helpers import events_of, host_pids, parent_pid, pid_alive, wait_job
from tests.support.helpers import wait_for as poll

API = "/api/v1"

RUNNER = r"""
import json, os, signal, subprocess, sys, time

p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
mode = p.get("mode", "echo")
attempt = int(os.environ["COMPUTALOT_ATTEMPT"])
index = os.environ["COMPUTALOT_TASK_INDEX"]
d = p.get("dir")


def touch(name):
    open(os.path.join(d, name), "w").close()


def gate(name):
    path = os.path.join(d, name)
    deadline = time.time() + 120
    while not os.path.exists(path):
        if time.time() > deadline:
            sys.exit("gate %s never opened" % name)
        time.sleep(0.05)


if mode == "sigkill":
    os.kill(os.getpid(), signal.SIGKILL)
if mode == "fail":
    print("failing on purpose", flush=True)
    sys.exit(2)
if mode == "hang":
    if p.get("ignore_term"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Inside the sandbox pids are its own namespace's: the test finds the host's pids of these
    # children by the marker in their command lines, and the runner as their parent.
    marker = "computalot-hang-%s-%s" % (index, os.urandom(6).hex())
    sh = subprocess.Popen(["sh", "-c", "trap '' TERM; while :; do sleep 1; done", marker])
    py = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1000)",
        marker])
    tmp = os.path.join(d, "pids-%s.tmp" % index)
    with open(tmp, "w") as fh:
        json.dump({"marker": marker}, fh)
    os.rename(tmp, os.path.join(d, "pids-%s.json" % index))
    while True:
        time.sleep(1)
if mode == "sleep":
    touch("started-%s-%s" % (index, attempt))
    time.sleep(p["seconds"])
if mode == "flaky":
    if attempt == 1:
        print("flaky attempt 1 fails on purpose", flush=True)
        sys.exit(3)
    gate("second-attempt-may-print")
    print("attempt two is live", flush=True)
    gate("second-attempt-may-finish")
if mode == "wait":
    gate(p["gate"])
if d:
    touch("done-%s-%s" % (index, attempt))
with open(os.environ["COMPUTALOT_TASK_RESULT"], "w") as fh:
    json.dump({"index": int(index), "attempt": attempt, "x": p.get("x")}, fh)
"""


@pytest.fixture(scope="module")
def project(admin: httpx.Client, make_project: Any) -> str:
    return str(make_project(admin, {"runner.py": RUNNER}))


def job_body(project: str, **fields: Any) -> dict[str, Any]:
    return {
        "project": project,
        "runner_command": ["python3", "runner.py"],
        "timeout_s": 60,
        **fields,
    }


def submit(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post(f"{API}/jobs", json=body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def get_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    answer = client.get(f"{API}/jobs/{job_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def tasks_of(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    answer = client.get(f"{API}/jobs/{job_id}/tasks", params={"limit": 1000})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["tasks"])


def assert_all_gone(pids: list[int]) -> None:
    """Every pid is dead; a short poll only absorbs the kernel finishing a SIGKILL."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.05)
    survivors = [p for p in pids if pid_alive(p)]
    assert not survivors, f"processes survived: {survivors}"


def read_pids(path: Path, *, check_alive: bool = True) -> list[int]:
    marker = json.loads(path.read_text())["marker"]
    children = host_pids(marker)
    if not check_alive and not children:
        return []
    assert len(children) == 2, (marker, children)
    (runner,) = {parent_pid(child) for child in children}
    pids = [runner, *children]
    if check_alive:
        assert all(pid_alive(p) for p in pids), "the runner and its children should be running"
    return pids


# ---- retries -----------------------------------------------------------------------------------
def test_sigkilled_runner_retries_then_fails(admin: httpx.Client, project: str) -> None:
    job = submit(admin, job_body(project, payload={"mode": "sigkill"}, max_retries=2))
    end = wait_job(admin, job["id"])
    assert end["status"] == "failed", end
    (task,) = tasks_of(admin, job["id"])
    assert task["status"] == "failed"
    assert task["attempt"] == 3
    assert task["exit_code"] == -9
    assert task["error"]["code"] == "killed", task
    assert end["error"]["code"], end
    assert end["recommended_action"], end
    events = events_of(admin, job["id"])
    retries = [e for e in events if e["event"] == "retry"]
    assert len(retries) == 2, retries
    assert [e["data"]["attempt"] for e in retries] == [1, 2]
    assert all(e["data"]["error"]["code"] == "killed" for e in retries), retries
    assert events[-1]["event"] == "end"


def test_some_elements_failing_gives_partial(admin: httpx.Client, project: str) -> None:
    items = [{"mode": "echo", "x": 1}, {"mode": "sigkill"}, {"mode": "echo", "x": 3}]
    job = submit(admin, job_body(project, fan_out={"items": items}, max_retries=1))
    end = wait_job(admin, job["id"])
    assert end["status"] == "partial", end
    assert end["task_counts"]["completed"] == 2
    assert end["task_counts"]["failed"] == 1
    results = admin.get(f"{API}/results/{job['id']}").json()
    assert results["aggregate_result"] == [
        {"index": 0, "attempt": 1, "x": 1},
        None,
        {"index": 2, "attempt": 1, "x": 3},
    ]
    assert results["completeness"] == pytest.approx(2 / 3, abs=1e-5)
    assert [t["attempt"] for t in tasks_of(admin, job["id"])] == [1, 2, 1]


def test_flaky_runner_succeeds_on_retry_and_output_keeps_failed_attempt(
    admin: httpx.Client, project: str, task_tmp: Path
) -> None:
    job = submit(
        admin, job_body(project, payload={"mode": "flaky", "dir": str(task_tmp)}, max_retries=1)
    )

    def retried() -> bool:
        return any(e["event"] == "retry" for e in events_of(admin, job["id"]))

    poll(retried, "the retry event")
    # Attempt 2 waits for a file, so its output is still empty: the failed attempt's text stays.
    output = admin.get(f"{API}/jobs/{job['id']}/output").json()
    (entry,) = output["tasks"]
    assert "flaky attempt 1 fails on purpose" in entry["stdout"], output
    assert entry["attempt"] == 1, output
    (task_tmp / "second-attempt-may-print").touch()

    def live_second_attempt() -> Any:
        (entry,) = admin.get(f"{API}/jobs/{job['id']}/output").json()["tasks"]
        return entry if "attempt two is live" in entry["stdout"] else None

    entry = poll(live_second_attempt, "attempt 2's live output in /output")
    assert entry["attempt"] == 2, entry
    # The live text is attempt 2's own: nothing of attempt 1 mixed in, no added blank lines.
    assert entry["stdout"] == "attempt two is live\n", entry
    (task,) = tasks_of(admin, job["id"])
    assert task["status"] == "running"
    assert task["live_feedback"]["output_tail"] == "attempt two is live\n", task
    (task_tmp / "second-attempt-may-finish").touch()

    end = wait_job(admin, job["id"])
    assert end["status"] == "completed", end
    (task,) = tasks_of(admin, job["id"])
    assert task["attempt"] == 2
    results = admin.get(f"{API}/results/{job['id']}").json()
    assert results["aggregate_result"] == {"index": 0, "attempt": 2, "x": None}
    (retry,) = [e for e in events_of(admin, job["id"]) if e["event"] == "retry"]
    assert retry["data"]["error"]["code"] == "exit_nonzero"
    final = admin.get(f"{API}/jobs/{job['id']}/output").json()["tasks"][0]
    assert final["attempt"] == 2
    assert final["stdout"] == "attempt two is live\n", final


# ---- timeouts and cancels kill the whole process group ----------------------------------------
def test_timeout_kills_runner_and_grandchildren(
    admin: httpx.Client, project: str, task_tmp: Path
) -> None:
    payload = {"mode": "hang", "dir": str(task_tmp), "ignore_term": True}
    job = submit(admin, job_body(project, payload=payload, timeout_s=3))
    pid_file = task_tmp / "pids-0.json"
    poll(pid_file.exists, "the runner's pid file")
    pids = read_pids(pid_file)

    end = wait_job(admin, job["id"])
    assert end["status"] == "failed", end
    (task,) = tasks_of(admin, job["id"])
    assert task["error"]["code"] == "timeout", task
    assert task["error"]["recommended_action"]
    assert_all_gone(pids)


@pytest.mark.quiet_host  # cancel answers within 1 s
def test_cancel_running_job_kills_processes_and_cancels_queued(
    admin: httpx.Client, project: str, task_tmp: Path
) -> None:
    # Each task wants every CPU of the node, so one runs and the rest wait; 20 tasks is more
    # than the dispatcher launches at once (2 x 4 CPUs + 8), so some also stay queued in the store.
    items = [{"mode": "hang", "dir": str(task_tmp)} for _ in range(20)]
    job = submit(admin, job_body(project, fan_out={"items": items}, requirements={"cpu": 4}))
    pid_file = poll(lambda: next(iter(task_tmp.glob("pids-*.json")), None), "a runner's pid file")
    pids = read_pids(pid_file)
    before = get_job(admin, job["id"])
    assert before["status"] == "running", before
    assert before["task_counts"]["queued"] > 0, before

    started = time.monotonic()
    answer = admin.put(f"{API}/jobs/{job['id']}/cancel")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "cancelled", "cancel answers with the job's new state"
    assert time.monotonic() - started < 1.0, "cancel answers at once, not once tasks stopped"
    end = wait_job(admin, job["id"])  # its end comes once the running attempt is recorded
    # The running task stopped itself; the dispatcher's force-kill of a worker whose cancel did
    # not land (kill grace + CANCEL_SLACK_S) was not needed.
    assert time.monotonic() - started < CANCEL_SLACK_S
    assert end["status"] == "cancelled", end
    assert end["task_counts"]["cancelled"] == 20, end
    assert all(t["status"] == "cancelled" for t in tasks_of(admin, job["id"]))
    for path in task_tmp.glob("pids-*.json"):  # a task Ray started just before its cancel
        pids += read_pids(path, check_alive=False)
    assert_all_gone(pids)

    # Cancelling a finished job is not an error and changes nothing.
    again = admin.put(f"{API}/jobs/{job['id']}/cancel")
    assert again.status_code == 200, again.text
    assert again.json() == get_job(admin, job["id"])
    assert again.json()["status"] == "cancelled"


def test_cancel_of_completed_job_returns_it_unchanged(admin: httpx.Client, project: str) -> None:
    job = submit(admin, job_body(project, payload={"x": 5}))
    end = wait_job(admin, job["id"])
    assert end["status"] == "completed"
    before = get_job(admin, job["id"])
    answer = admin.put(f"{API}/jobs/{job['id']}/cancel")
    assert answer.status_code == 200, answer.text
    assert answer.json() == before
    assert get_job(admin, job["id"]) == before
    results = admin.get(f"{API}/results/{job['id']}").json()
    assert results["aggregate_result"] == {"index": 0, "attempt": 1, "x": 5}


# ---- the dispatcher dies mid-job -------------------------------------------------------------
def test_dispatcher_killed_mid_job_reconciles_and_completes(
    admin: httpx.Client, project: str, task_tmp: Path, platform: Any
) -> None:
    items = [{"mode": "sleep", "seconds": 2, "dir": str(task_tmp), "x": i} for i in range(8)]
    job = submit(admin, job_body(project, fan_out={"items": items}))
    poll(lambda: list(task_tmp.glob("started-*")), "a running task")
    namespace = platform.settings.ray_namespace
    ray.kill(ray.get_actor("computalot-dispatcher", namespace=namespace), no_restart=False)

    end = wait_job(admin, job["id"], timeout_s=180)
    assert end["status"] == "completed", end
    assert end["task_counts"]["completed"] == 8, end
    tasks = tasks_of(admin, job["id"])
    assert all(t["status"] == "completed" for t in tasks)
    assert all(t["attempt"] in (1, 2) for t in tasks), [t["attempt"] for t in tasks]
    results = admin.get(f"{API}/results/{job['id']}").json()
    assert [r["result"]["x"] for r in results["results"]] == list(range(8))
    assert [r["result"]["attempt"] for r in results["results"]] == [t["attempt"] for t in tasks]

    events = events_of(admin, job["id"])
    retries = [e for e in events if e["event"] == "retry"]
    assert retries, "the interrupted attempts must be retried"
    assert all(e["data"]["error"]["code"] == "worker_lost" for e in retries), retries
    assert {e["data"]["task_id"] for e in retries} == {t["id"] for t in tasks if t["attempt"] == 2}
    result_events = [e["data"]["task_id"] for e in events if e["event"] == "result"]
    assert sorted(result_events) == sorted(t["id"] for t in tasks), "each task completes once"
    assert [e["event"] for e in events].count("end") == 1
    ray.get(ray.get_actor("computalot-dispatcher", namespace=namespace).ping.remote(), timeout=30)


# ---- dependencies ----------------------------------------------------------------------------
def test_dependent_job_starts_after_its_dependency_completes(
    admin: httpx.Client, project: str, task_tmp: Path
) -> None:
    a = submit(
        admin, job_body(project, payload={"mode": "wait", "dir": str(task_tmp), "gate": "a"})
    )
    b = submit(admin, job_body(project, payload={"x": "b"}, depends_on=[a["id"]]))
    poll(lambda: get_job(admin, a["id"])["status"] == "running", "job A to run")
    time.sleep(1.0)  # several dispatch cycles: B must not start while A runs
    waiting = get_job(admin, b["id"])
    assert waiting["status"] == "queued", waiting
    assert waiting["started_at"] is None
    assert tasks_of(admin, b["id"])[0]["attempt"] == 0

    (task_tmp / "a").touch()
    end_a = wait_job(admin, a["id"])
    end_b = wait_job(admin, b["id"])
    assert end_a["status"] == "completed", end_a
    assert end_b["status"] == "completed", end_b
    assert end_b["started_at"] >= end_a["finished_at"]
    (task_b,) = tasks_of(admin, b["id"])
    assert task_b["started_at"] >= end_a["finished_at"]


def test_failed_dependency_fails_the_dependent_job(admin: httpx.Client, project: str) -> None:
    a = submit(admin, job_body(project, payload={"mode": "fail"}))
    b = submit(admin, job_body(project, payload={"x": "b"}, depends_on=[a["id"]]))
    assert wait_job(admin, a["id"])["status"] == "failed"
    end_b = wait_job(admin, b["id"])
    assert end_b["status"] == "failed", end_b
    assert end_b["error"]["code"] == "dependency_failed", end_b
    assert a["id"] in end_b["error"]["message"]
    (task_b,) = tasks_of(admin, b["id"])
    assert task_b["status"] == "cancelled"
    assert task_b["attempt"] == 0, "the dependent job's task must never run"


def test_unknown_dependency_is_422(admin: httpx.Client, project: str) -> None:
    answer = admin.post(f"{API}/jobs", json=job_body(project, depends_on=["job_doesnotexist"]))
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["details"][0]["loc"] == ["depends_on", 0]


def test_cancel_of_a_job_waiting_on_a_dependency(
    admin: httpx.Client, project: str, task_tmp: Path
) -> None:
    a = submit(
        admin, job_body(project, payload={"mode": "wait", "dir": str(task_tmp), "gate": "a"})
    )
    b = submit(admin, job_body(project, payload={"x": "b"}, depends_on=[a["id"]]))
    answer = admin.put(f"{API}/jobs/{b['id']}/cancel")
    assert answer.status_code == 200, answer.text
    end_b = wait_job(admin, b["id"])
    assert end_b["status"] == "cancelled", end_b
    assert tasks_of(admin, b["id"])[0]["attempt"] == 0
    (task_tmp / "a").touch()
    assert wait_job(admin, a["id"])["status"] == "completed"
    assert get_job(admin, b["id"])["status"] == "cancelled", "terminal states are final"
