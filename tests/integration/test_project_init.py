"""Project init and readiness, invalidate and cache_mounts through real HTTP and real Ray
(docs/llms-full.md, "Projects"): init commands and validation run sandboxed on every node,
their state per node is in status/details, a cache mount filled by init is what the project's
tasks on that node find (and no other project), and a job on a cold revision warms it once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.helpers import assert_envelope, make_tarball, submit_job, wait_for, wait_job

API = "/api/v1"

#: Counts its runs in $COUNT_FILE and leaves a file in the cache mount ($DATA_CACHE).
INIT = r"""
import os
with open(os.environ["COUNT_FILE"], "a") as fh:
    fh.write("init\n")
with open(os.path.join(os.environ["DATA_CACHE"], "warm.txt"), "w") as fh:
    fh.write(os.environ["CACHE_TEXT"])
"""

#: Reports what the cache mount holds (or null).
RUNNER = r"""
import json, os
cache = os.environ.get("DATA_CACHE")
path = os.path.join(cache, "warm.txt") if cache else None
text = open(path).read() if path and os.path.exists(path) else None
payload = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
json.dump({"cache": text, "i": payload.get("i")}, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))
"""


def manifest(
    count_file: Path, *, text: str = "filled by init", check: list[str] | None = None
) -> str:
    return json.dumps(
        {
            "version": 1,
            "runtime": {
                "env": {"COUNT_FILE": str(count_file), "CACHE_TEXT": text},
                "init": {"commands": [{"label": "fill cache", "command": ["python3", "init.py"]}]},
            },
            "validation": {
                "executables": ["python3"],
                "files": ["runner.py"],
                "commands": [
                    {"label": "probe", "command": check or ["python3", "-c", "print('probe ok')"]}
                ],
            },
            "cache_mounts": [{"name": "data", "path": ".cache/data", "env": "DATA_CACHE"}],
        }
    )


def files(count_file: Path, **kw: Any) -> dict[str, str | bytes]:
    return {
        "computalot.project.json": manifest(count_file, **kw),
        "init.py": INIT,
        "runner.py": RUNNER,
    }


def status(client: httpx.Client, name: str, details: bool = False) -> dict[str, Any]:
    answer = client.get(f"{API}/projects/{name}/status" + ("/details" if details else ""))
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def wait_state(client: httpx.Client, name: str, *states: str) -> dict[str, Any]:
    return dict(
        wait_for(
            lambda: (s := status(client, name)) and s["state"] in states and s,
            f"project {name} in {states}",
            timeout_s=180,
        )
    )


def runs(count_file: Path) -> int:
    return count_file.read_text().count("init\n") if count_file.exists() else 0


def fan_out(client: httpx.Client, name: str, n: int) -> dict[str, Any]:
    job_id = submit_job(client, name, fan_out={"items": [{"i": i} for i in range(n)]})
    job = wait_job(client, job_id, timeout_s=240)
    if job["status"] != "completed":
        tasks = client.get(f"{API}/jobs/{job_id}/tasks").json()["tasks"]
        raise AssertionError(f"job {job['status']}: {[t['error'] for t in tasks][:3]}")
    results = client.get(f"{API}/results/{job_id}")
    assert results.status_code == 200, results.text
    return {"job": job, "results": results.json()["results"]}


def test_init_warms_every_node_then_jobs_find_the_cache_and_invalidate_warms_again(
    new_account: Callable[..., httpx.Client], make_project: Any, task_tmp: Path
) -> None:
    client = new_account()
    count = task_tmp / "init-count"
    name = make_project(client, files(count))

    fresh = status(client, name)
    assert fresh["state"] == "published", fresh
    assert (fresh["can_accept_new_jobs"], fresh["ready_for_jobs"]) == (True, False)
    assert fresh["nodes_total"] >= 1 and fresh["nodes_ready"] == 0

    answer = client.post(f"{API}/projects/{name}/init", json={})
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "initializing"
    assert answer.json()["revision_id"] == fresh["revision_id"]
    ready = wait_state(client, name, "ready", "failed")
    assert ready["state"] == "ready", status(client, name, details=True)
    assert ready["ready_for_jobs"] is True
    assert ready["nodes_ready"] == ready["nodes_total"] >= 1
    assert runs(count) == ready["nodes_total"], "init ran once per node"

    details = status(client, name, details=True)
    node = details["nodes"][0]
    assert node["node"] == "node-1" and node["state"] == "ready", details
    assert node["warmed_at"] and node["duration_s"] is not None and node["error"] is None
    labels = {v["label"]: v for v in details["validation"]}
    assert set(labels) >= {"executable python3", "file runner.py", "probe"}, labels
    assert all(v["ok"] for v in labels.values()), labels
    assert "probe ok" in labels["probe"]["output"]
    assert "/tmp" not in json.dumps(details["nodes"]) and "NodeID" not in json.dumps(details)

    again = client.post(f"{API}/projects/{name}/init", json={})
    assert again.status_code == 202, again.text
    assert again.json()["status"] == "ready", "re-init of a ready revision is a no-op"
    assert runs(count) == ready["nodes_total"]

    # The project's tasks find what init left in the cache mount; init did not run again.
    ran = fan_out(client, name, 8)
    assert ran["job"]["status"] == "completed", ran["job"]
    assert [r["result"]["cache"] for r in ran["results"]] == ["filled by init"] * 8
    assert runs(count) == ready["nodes_total"]

    # Another project with a cache mount of the same name sees its own (empty) directory.
    other = make_project(
        client,
        {
            "computalot.project.json": json.dumps(
                {"cache_mounts": [{"name": "data", "path": ".cache/data", "env": "DATA_CACHE"}]}
            ),
            "runner.py": RUNNER,
        },
    )
    theirs = fan_out(client, other, 2)
    assert theirs["job"]["status"] == "completed", theirs["job"]
    assert [r["result"]["cache"] for r in theirs["results"]] == [None, None]

    # Invalidate forgets the warm state; the next job warms the node again.
    forgot = client.post(f"{API}/projects/{name}/invalidate")
    assert forgot.status_code == 200, forgot.text
    assert forgot.json()["state"] == "published" and forgot.json()["ready_for_jobs"] is False
    assert status(client, name, details=True)["nodes"] == []
    rerun = fan_out(client, name, 4)
    assert rerun["job"]["status"] == "completed", rerun["job"]
    assert runs(count) == 2 * ready["nodes_total"], "the job ran init again, once per node"
    assert wait_state(client, name, "ready")["nodes_ready"] >= 1


def test_a_job_on_a_cold_revision_runs_init_once_per_node_before_its_tasks(
    new_account: Callable[..., httpx.Client], make_project: Any, task_tmp: Path
) -> None:
    client = new_account()
    count = task_tmp / "init-count"
    name = make_project(client, files(count, text="cold start"))
    assert status(client, name)["state"] == "published"
    ran = fan_out(client, name, 8)
    assert ran["job"]["status"] == "completed", ran["job"]
    assert [r["result"]["cache"] for r in ran["results"]] == ["cold start"] * 8
    nodes = status(client, name)["nodes_total"]
    assert runs(count) == nodes == 1, "8 tasks on one node: init ran once"
    ready = wait_state(client, name, "ready")
    assert ready["nodes_ready"] == 1
    node = status(client, name, details=True)["nodes"][0]
    assert node["node"] == "node-1" and node["warmed_at"], node


def test_init_on_a_revision_whose_validation_fails_names_the_node_check_and_output(
    new_account: Callable[..., httpx.Client], make_project: Any, task_tmp: Path
) -> None:
    client = new_account()
    count = task_tmp / "init-count"
    check = ["python3", "-c", "import sys; print('model weights missing'); sys.exit(3)"]
    name = make_project(client, files(count, check=check))
    answer = client.post(f"{API}/projects/{name}/init", json={})
    assert answer.status_code == 202, answer.text
    failed = wait_state(client, name, "failed", "ready")
    assert failed["state"] == "failed" and failed["ready_for_jobs"] is False
    details = status(client, name, details=True)
    node = details["nodes"][0]
    assert node["node"] == "node-1" and node["state"] == "failed", details
    assert node["error"]["code"] == "init_failed"
    assert node["error"]["check"] == "probe"
    assert "model weights missing" in node["error"]["output"]
    probe = next(v for v in details["validation"] if v["label"] == "probe")
    assert probe["ok"] is False and "model weights missing" in probe["output"]
    assert "probe" in details["recommended_action"] and "node-1" in details["recommended_action"]

    # A job there fails with init_failed naming the check (its command never runs).
    job_id = submit_job(client, name, max_retries=0)
    job = wait_job(client, job_id)
    assert job["status"] == "failed", job
    tasks = client.get(f"{API}/jobs/{job_id}/tasks").json()["tasks"]
    error = tasks[0]["error"]
    assert error["code"] == "init_failed" and "probe" in error["message"], error
    assert "model weights missing" in error["message"]


def test_init_needs_a_revision_and_another_accounts_project_is_404(
    new_account: Callable[..., httpx.Client], make_project: Any
) -> None:
    owner, stranger = new_account(), new_account()
    name = f"p-{uuid.uuid4().hex[:10]}"
    assert owner.post(f"{API}/projects", json={"name": name}).status_code == 201
    err = assert_envelope(
        owner.post(f"{API}/projects/{name}/init", json={}), 422, "validation_error"
    )
    assert err["details"][0]["loc"] == ["name"]
    assert owner.post(f"{API}/projects/{name}/push", content=make_tarball({"runner.py": RUNNER}))
    for method, path in [
        ("POST", "init"),
        ("POST", "invalidate"),
        ("GET", "status"),
        ("GET", "status/details"),
    ]:
        answer = stranger.request(method, f"{API}/projects/{name}/{path}", json=None)
        assert_envelope(answer, 404, "not_found")
