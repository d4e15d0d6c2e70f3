"""The result cache through the API (docs/llms-full.md, "Result cache"): real HTTP, real Ray,
real runner processes.

The runner appends a line to a log file in ``task_tmp`` every time it runs, so "answered
without running" is checked by counting lines, not by trusting the API's ``cached`` flag.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.helpers import assert_envelope, events_of, make_tarball, wait_job

API = "/api/v1"
RUNNER = r"""
import json, os, sys
p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
with open(p["log"], "a") as fh:
    fh.write("%s\n" % p.get("x"))
if p.get("mode") == "fail":
    sys.exit(3)
if p.get("mode") == "artifact":
    with open(os.path.join(os.environ["COMPUTALOT_ARTIFACT_DIR"], "out.txt"), "w") as fh:
        fh.write("made from %s" % p.get("x"))
print("ran", p.get("x"))
json.dump({"double": p.get("x", 0) * 2, "salt": p.get("salt")}, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))
"""


@pytest.fixture(scope="module")
def member(new_account: Callable[..., httpx.Client]) -> httpx.Client:
    return new_account()


@pytest.fixture(scope="module")
def project(member: httpx.Client, make_project: Any) -> str:
    return str(make_project(member, {"runner.py": RUNNER}))


@pytest.fixture
def log(task_tmp: Path) -> Path:
    return task_tmp / f"runs-{uuid.uuid4().hex[:8]}.log"


def runs(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def submit(client: httpx.Client, project: str, xs: list[int], log: Path, **fields: Any) -> dict:
    payload = {"log": str(log), "x": None, **fields.pop("payload", {})}
    body = {
        "project": project,
        "runner_command": ["python3", "runner.py"],
        "timeout_s": 60,
        "payload": payload,
        "fan_out": {"by": "x"},
        **fields,
    }
    body["payload"]["x"] = xs
    answer = client.post(f"{API}/jobs", json=body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def run(client: httpx.Client, project: str, xs: list[int], log: Path, **fields: Any) -> dict:
    job = submit(client, project, xs, log, **fields)
    return wait_job(client, job["id"])


def tasks_of(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    answer = client.get(f"{API}/jobs/{job_id}/tasks", params={"limit": 500})
    assert answer.status_code == 200, answer.text
    return sorted(answer.json()["tasks"], key=lambda t: t["index"])


def results_of(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    answer = client.get(f"{API}/results/{job_id}")
    assert answer.status_code == 200, answer.text
    return list(answer.json()["results"])


def test_a_resubmitted_job_is_answered_without_running(
    member: httpx.Client, project: str, log: Path
) -> None:
    first = run(member, project, [1, 2, 3], log, cache=True)
    assert first["status"] == "completed", first
    assert runs(log) == 3
    sources = tasks_of(member, first["id"])
    assert [t["cached"] for t in sources] == [False] * 3

    again = submit(member, project, [1, 2, 3], log, cache=True)
    # every task was answered in the submit: the job ended before the answer
    assert again["status"] == "completed", again
    assert again["task_counts"]["completed"] == 3, again
    ended = wait_job(member, again["id"])
    assert ended["status"] == "completed"
    assert runs(log) == 3  # no process ran
    cached = tasks_of(member, again["id"])
    assert [t["cached"] for t in cached] == [True] * 3
    assert [t["cached_from"] for t in cached] == [t["id"] for t in sources]
    assert all(t["attempt"] == 0 and t["duration_s"] == 0 for t in cached)
    assert cached[1]["payload"]["x"] == 2
    assert [r["result"] for r in results_of(member, again["id"])] == [
        r["result"] for r in results_of(member, first["id"])
    ]
    assert all(r["cached"] for r in results_of(member, again["id"]))
    names = [e["event"] for e in events_of(member, again["id"])]
    assert names == ["job", "end"], names  # cached tasks are born completed: no task events
    output = member.get(f"{API}/jobs/{again['id']}/output")  # the source's, with its result
    assert output.status_code == 200, output.text
    assert "ran 1" in output.json()["tasks"][0]["stdout"]


def test_a_different_payload_misses_and_half_seen_elements_hit(
    member: httpx.Client, project: str, log: Path
) -> None:
    run(member, project, [10, 11], log, cache=True)
    assert runs(log) == 2
    other = run(member, project, [10, 11], log, cache=True, payload={"salt": "b"})
    assert runs(log) == 4  # the base payload differs: every element runs
    assert not any(t["cached"] for t in tasks_of(member, other["id"]))

    partial = run(member, project, [10, 11, 12, 13], log, cache=True)
    assert partial["status"] == "completed", partial
    assert runs(log) == 6  # only 12 and 13 ran
    flags = [t["cached"] for t in tasks_of(member, partial["id"])]
    assert flags == [True, True, False, False]
    assert [r["result"]["double"] for r in results_of(member, partial["id"])] == [20, 22, 24, 26]


def test_jobs_without_cache_always_run(member: httpx.Client, project: str, log: Path) -> None:
    run(member, project, [20], log, cache=True)
    plain = run(member, project, [20], log)
    assert runs(log) == 2
    assert tasks_of(member, plain["id"])[0]["cached"] is False


def test_refresh_runs_again_and_replaces_the_entry(
    member: httpx.Client, project: str, log: Path
) -> None:
    run(member, project, [30], log, cache=True)
    refreshed = run(member, project, [30], log, cache="refresh")
    assert runs(log) == 2
    (fresh,) = tasks_of(member, refreshed["id"])
    assert fresh["cached"] is False
    later = run(member, project, [30], log, cache=True)
    assert runs(log) == 2
    assert tasks_of(member, later["id"])[0]["cached_from"] == fresh["id"]


def test_max_age_s_skips_older_entries(member: httpx.Client, project: str, log: Path) -> None:
    run(member, project, [40], log, cache=True)
    young = run(member, project, [40], log, cache={"max_age_s": 3600})
    assert runs(log) == 1 and tasks_of(member, young["id"])[0]["cached"] is True
    time.sleep(2.1)
    old = run(member, project, [40], log, cache={"max_age_s": 1})
    assert runs(log) == 2
    assert tasks_of(member, old["id"])[0]["cached"] is False


def test_never_across_accounts(
    member: httpx.Client,
    new_account: Callable[..., httpx.Client],
    make_project: Any,
    log: Path,
) -> None:
    """The same project content, command and payload in another account: a miss."""
    name = f"p-{uuid.uuid4().hex[:10]}"
    mine = make_project(member, {"runner.py": RUNNER}, name=name)
    run(member, mine, [50], log, cache=True)
    stranger = new_account()
    theirs = make_project(stranger, {"runner.py": RUNNER}, name=name)
    job = run(stranger, theirs, [50], log, cache=True)
    assert runs(log) == 2
    assert tasks_of(stranger, job["id"])[0]["cached"] is False


def test_a_failed_task_is_never_cached(member: httpx.Client, project: str, log: Path) -> None:
    first = run(member, project, [60], log, cache=True, payload={"mode": "fail"})
    assert first["status"] == "failed", first
    second = run(member, project, [60], log, cache=True, payload={"mode": "fail"})
    assert second["status"] == "failed"
    assert runs(log) == 2
    assert tasks_of(member, second["id"])[0]["cached"] is False


def test_a_new_revision_misses(
    member: httpx.Client, make_project: Any, task_tmp: Path, log: Path
) -> None:
    name = make_project(member, {"runner.py": RUNNER})
    run(member, name, [70], log, cache=True)
    changed = RUNNER + "\n# a comment changes the content hash\n"
    pushed = member.post(
        f"{API}/projects/{name}/push", content=make_tarball({"runner.py": changed})
    )
    assert pushed.status_code == 200, pushed.text
    job = run(member, name, [70], log, cache=True)
    assert runs(log) == 2
    assert tasks_of(member, job["id"])[0]["cached"] is False


def test_deleting_a_source_artifact_invalidates(
    member: httpx.Client, project: str, log: Path
) -> None:
    first = run(member, project, [80], log, cache=True, payload={"mode": "artifact"})
    (source,) = tasks_of(member, first["id"])
    (artifact,) = source["artifacts"]
    hit = run(member, project, [80], log, cache=True, payload={"mode": "artifact"})
    (cached,) = tasks_of(member, hit["id"])
    assert runs(log) == 1 and cached["cached"] is True
    assert cached["artifacts"] == [artifact]
    assert member.delete(f"{API}/artifacts/{artifact}").status_code == 200
    again = run(member, project, [80], log, cache=True, payload={"mode": "artifact"})
    assert runs(log) == 2
    assert tasks_of(member, again["id"])[0]["cached"] is False


def test_a_recipe_job_hits(member: httpx.Client) -> None:
    body = {"payload": {"operation": "eval_batch", "candidates": [[0.0] * 45]}, "cache": True}
    first = member.post(f"{API}/recipes/packing/jobs", json=body)
    assert first.status_code == 201, first.text
    done = wait_job(member, first.json()["id"], timeout_s=300)
    assert done["status"] == "completed", done
    second = member.post(f"{API}/recipes/packing/jobs", json=body)
    assert second.status_code == 201, second.text
    assert second.json()["status"] == "completed", second.json()
    (task,) = tasks_of(member, second.json()["id"])
    assert task["cached"] is True
    assert task["cached_from"] == tasks_of(member, done["id"])[0]["id"]
    first_results = results_of(member, done["id"])
    assert results_of(member, second.json()["id"])[0]["result"] == first_results[0]["result"]
    other = {**body, "payload": {**body["payload"], "candidates": [[1.0] * 45]}}
    third = member.post(f"{API}/recipes/packing/jobs", json=other)
    assert third.status_code == 201 and third.json()["status"] != "completed"


@pytest.mark.parametrize("bad", ["yes", 1, {"max_age_s": 0}, {"max_age": 5}, [True]])
def test_a_bad_cache_field_is_a_422_naming_it(
    member: httpx.Client, project: str, bad: Any, log: Path
) -> None:
    body = {"project": project, "runner_command": ["python3", "runner.py"], "cache": bad}
    answer = member.post(f"{API}/jobs", json=body)
    error = assert_envelope(answer, 422, "validation_error")
    assert any("cache" in json.dumps(d["loc"]) for d in error["details"]), error
    assert runs(log) == 0
