"""Hostile input cannot stop the platform for anyone (issue: never down, never stuck).

Deep, mistyped and oversized requests get a 400/413/422 envelope and the replica stays up; a
job whose stored row cannot be read back (written before the doors measured depth, or edited by
hand) fails alone, through a dispatcher restart too, while other accounts' jobs run; a bad
cursor is 400 on every paged route.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from tests.support.helpers import assert_envelope, submit_job, wait_for, wait_job

API = "/api/v1"

RUNNER = r"""
import json, os, time
p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
gate = p.get("gate")
deadline = time.time() + 120
while gate and not os.path.exists(gate) and time.time() < deadline:
    time.sleep(0.05)
json.dump({"ok": True, "x": p.get("x")}, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))
"""


@pytest.fixture(scope="module")
def project(admin: httpx.Client, make_project: Any) -> str:
    return str(make_project(admin, {"runner.py": RUNNER}))


def nested(levels: int) -> str:
    """JSON text of ``levels`` nested lists."""
    return "[" * levels + "]" * levels


def body_with(value_json: str, project: str) -> bytes:
    """A job submit whose payload is ``{"d": <value_json>}`` (two levels around it)."""
    head = json.dumps({"project": project, "runner_command": ["python3", "runner.py"]})[:-1]
    return f'{head}, "payload": {{"d": {value_json}}}}}'.encode()


def post_raw(client: httpx.Client, path: str, body: bytes) -> httpx.Response:
    return client.post(path, content=body, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(
    ("path", "who"),
    [
        ("/api/v1/feedback", "anon"),
        ("/api/v1/jobs", "anon"),
        ("/api/v1/jobs", "admin"),
        ("/api/v1/admin/accounts", "admin"),
        ("/api/v1/auth/wallet/challenge", "anon"),
    ],
)
def test_a_body_nested_100000_levels_is_400_and_the_replica_stays_up(
    path: str, who: str, request: pytest.FixtureRequest
) -> None:
    client: httpx.Client = request.getfixturevalue(who)
    body = ('{"d": ' + nested(100_000) + "}").encode()
    for _ in range(3):
        err = assert_envelope(post_raw(client, path, body), 400, "bad_request")
        assert "deeper than 100 levels" in err["message"], err
        assert err["details"][0]["loc"] == ["body"]
        assert err["recommended_action"]
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 200


def test_depth_limit_is_exactly_100_levels(admin: httpx.Client, project: str) -> None:
    # The body object and "payload" are two levels: 98 nested lists make 100 in all.
    accepted = post_raw(admin, f"{API}/jobs", body_with(nested(98), project))
    assert accepted.status_code == 201, accepted.text
    ended = wait_job(admin, accepted.json()["id"])
    assert ended["status"] == "completed", (ended["error"], ended["recommended_action"])
    err = assert_envelope(
        post_raw(admin, f"{API}/jobs", body_with(nested(99), project)), 400, "bad_request"
    )
    assert "100 levels" in err["message"]


def test_meta_nested_5000_levels_is_refused(admin: httpx.Client, project: str) -> None:
    head = json.dumps({"project": project, "runner_command": ["python3", "runner.py"]})[:-1]
    body = f'{head}, "meta": {nested(5000)}}}'.encode()
    assert_envelope(post_raw(admin, f"{API}/jobs", body), 400, "bad_request")


MISTYPED = [
    pytest.param({"timeout_s": "10"}, ["timeout_s"], id="timeout-string"),
    pytest.param({"timeout_s": True}, ["timeout_s"], id="timeout-bool"),
    pytest.param({"timeout_s": 10.5}, ["timeout_s"], id="timeout-float"),
    pytest.param({"max_retries": "1"}, ["max_retries"], id="retries-string"),
    pytest.param(
        {"batch_size": "2", "fan_out": {"items": [{}]}}, ["batch_size"], id="batch-string"
    ),
    pytest.param(
        {"batch_size": 10**30, "fan_out": {"items": [{}]}}, ["batch_size"], id="batch-huge"
    ),
    pytest.param(
        {"fan_out": {"items": [{}], "batch_size": True}},
        ["fan_out", "batch_size"],
        id="inner-batch-bool",
    ),
    pytest.param(
        {"fan_out": {"chunks": 2, "range_field": "n", "total": 10**30}},
        ["fan_out", "total"],
        id="chunks-total-huge",
    ),
    pytest.param(
        {"fan_out": {"chunks": "2", "range_field": "n", "total": 10}},
        ["fan_out", "chunks"],
        id="chunks-string",
    ),
    pytest.param(
        {"runner_command": ["python3", "x" * (10 * 1024 * 1024)]},
        ["runner_command"],
        id="argv-10MB",
    ),
    pytest.param({"tags": ["a\x00b"]}, ["tags"], id="tag-nul"),
    pytest.param({"tags": ["a\nb"]}, ["tags"], id="tag-newline"),
    pytest.param({"tags": [1]}, ["tags", 0], id="tag-number"),
    pytest.param({"depends_on": [7]}, ["depends_on", 0], id="depends-number"),
    pytest.param({"requirements": {"cpu": "2"}}, ["requirements", "cpu"], id="cpu-string"),
    pytest.param({"requirements": {"memory_mb": True}}, ["requirements", "memory_mb"], id="mem"),
    pytest.param({"checkpointing": {"enabled": "yes"}}, ["checkpointing"], id="ckpt"),
    pytest.param({"priority": 1}, ["priority"], id="priority-number"),
]


@pytest.mark.parametrize(("fields", "loc"), MISTYPED)
def test_mistyped_fields_are_422_naming_the_field(
    admin: httpx.Client, project: str, fields: dict[str, Any], loc: list[Any]
) -> None:
    body = {"project": project, "runner_command": ["python3", "runner.py"], **fields}
    err = assert_envelope(admin.post(f"{API}/jobs", json=body), 422, "validation_error")
    assert err["details"][0]["loc"][: len(loc)] == loc, err
    assert err["recommended_action"]


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


BAD_CURSORS = [
    _cursor([1, 2, 3]),
    _cursor(["x"]),
    _cursor([]),
    _cursor([None]),
    _cursor([True]),
    _cursor({"a": 1}),
    _cursor([[[[]]]]),
    _cursor(["2026-01-01T00:00:00", "job_x"]),  # no time zone
    _cursor(["not a time", "job_x"]),
    _cursor([1.5, 2]),
    "%%%not-base64",
    "A" * 600,
    _cursor(json.loads(nested(90))),
]


@pytest.mark.parametrize("route", ["jobs", "tasks", "output", "results"])
def test_a_bad_cursor_is_400_on_every_paged_route(
    admin: httpx.Client, project: str, route: str
) -> None:
    job_id = submit_job(admin, project)
    path = {
        "jobs": f"{API}/jobs",
        "tasks": f"{API}/jobs/{job_id}/tasks",
        "output": f"{API}/jobs/{job_id}/output",
        "results": f"{API}/results/{job_id}",
    }[route]
    for cursor in BAD_CURSORS:
        answer = admin.get(path, params={"cursor": cursor})
        assert answer.status_code in (400, 422), (cursor, answer.text)
        assert_envelope(answer, answer.status_code, answer.json()["error"]["code"])


def test_unknown_status_filter_is_422(admin: httpx.Client) -> None:
    err = assert_envelope(
        admin.get(f"{API}/jobs", params={"status": "running,bogus"}), 422, "validation_error"
    )
    assert err["details"][0]["loc"] == ["status"]
    long = ",".join(["queued"] * 300)
    assert_envelope(admin.get(f"{API}/jobs", params={"status": long}), 422, "validation_error")


def _poison(platform: Any, job_id: str, **columns: str) -> None:
    """Write raw column text into a job row, as an older version or a hand edit could have."""
    db = Path(platform.settings.data_dir) / "computalot.db"
    with sqlite3.connect(db, timeout=30) as conn:
        for column, text in columns.items():
            conn.execute(f"UPDATE jobs SET {column} = ? WHERE id = ?", (text, job_id))


def test_an_unreadable_job_fails_alone_even_across_a_dispatcher_restart(
    admin: httpx.Client,
    new_account: Any,
    make_project: Any,
    project: str,
    platform: Any,
    task_tmp: Path,
) -> None:
    gate = task_tmp / "gate"
    first = submit_job(admin, project, payload={"gate": str(gate)})
    blocked = submit_job(admin, project, depends_on=[first], payload={"x": 1})
    deep = '{"d": ' + nested(5000) + "}"
    _poison(platform, blocked, payload=deep, meta=deep)

    # The owner's list still reads with any JSON parser: the answer cuts what no client reads.
    listed = admin.get(f"{API}/jobs", params={"limit": 500})
    assert listed.status_code == 200, listed.text[:300]
    mine = [j for j in json.loads(listed.text)["jobs"] if j["id"] == blocked]
    assert mine and "(cut: nested deeper than" in json.dumps(mine[0]["meta"])

    # A restart reconciles the store with the poisoned row in it.
    namespace = platform.settings.ray_namespace
    ray.kill(ray.get_actor("computalot-dispatcher", namespace=namespace), no_restart=False)
    wait_for(lambda: admin.get("/ready").status_code == 200, "ready after restart", timeout_s=90)

    gate.touch()
    assert wait_job(admin, first)["status"] == "completed"
    ended = wait_job(admin, blocked)
    assert ended["status"] == "failed", ended
    assert ended["error"]["code"] == "unreadable_job", ended
    assert ended["recommended_action"]

    # Everyone else keeps running.
    other = new_account()
    other_project = make_project(other, {"runner.py": RUNNER})
    assert wait_job(other, submit_job(other, other_project, payload={"x": 2}))["status"] == (
        "completed"
    )
    ready = admin.get("/ready")
    assert ready.status_code == 200, ready.text
    info = ray.get(
        ray.get_actor("computalot-dispatcher", namespace=namespace).ping.remote(), timeout=30
    )
    assert info["quarantined"] >= 1
    assert info["last_error"] is None


def test_quotas_refuse_with_429_naming_the_limit(
    new_account: Any, make_project: Any, task_tmp: Path
) -> None:
    """The session platform runs with 300 open jobs and 30,000 unfinished tasks per account."""
    client = new_account()
    name = make_project(client, {"runner.py": RUNNER})
    gate = task_tmp / "gate"
    first = submit_job(client, name, payload={"gate": str(gate)})
    body = {"project": name, "runner_command": ["python3", "runner.py"], "depends_on": [first]}
    big = {**body, "fan_out": {"chunks": 29_999, "range_field": "n", "total": 29_999}}
    assert client.post(f"{API}/jobs", json=big).status_code == 201

    err = assert_envelope(client.post(f"{API}/jobs", json=body), 429, "quota_exceeded")
    assert err["details"][0]["loc"] == ["quota", "queued_tasks"], err
    assert err["details"][0]["limit"] == 30_000
    assert "30000" in err["message"]

    tag = f"q-{uuid.uuid4().hex[:6]}"
    batch = client.post(f"{API}/jobs/batch", json={"jobs": [{**body, "tags": [tag]}] * 3})
    assert batch.status_code == 201
    assert all(item["error"]["code"] == "quota_exceeded" for item in batch.json()["jobs"])
    assert client.get(f"{API}/jobs", params={"tag": tag}).json()["jobs"] == []

    # Cancelling the first job fails its dependents: the quota is free again.
    client.put(f"{API}/jobs/{first}/cancel")
    wait_for(
        lambda: client.post(f"{API}/jobs", json={**body, "depends_on": []}).status_code == 201,
        "a submit under the quota again",
        timeout_s=60,
    )


def test_open_jobs_quota(new_account: Any, make_project: Any, task_tmp: Path) -> None:
    client = new_account()
    name = make_project(client, {"runner.py": RUNNER})
    first = submit_job(client, name, payload={"gate": str(task_tmp / "never")})
    body = {"project": name, "runner_command": ["python3", "runner.py"], "depends_on": [first]}
    made = 1
    for size in (200, 99):
        answer = client.post(f"{API}/jobs/batch", json={"jobs": [body] * size})
        assert all("id" in item for item in answer.json()["jobs"]), answer.text[:300]
        made += size
    assert made == 300
    err = assert_envelope(client.post(f"{API}/jobs", json=body), 429, "quota_exceeded")
    assert err["details"][0]["loc"] == ["quota", "open_jobs"]
    assert err["details"][0]["current"] == 300
    client.put(f"{API}/jobs/{first}/cancel")


def test_an_unreadable_task_element_fails_that_task_only(
    admin: httpx.Client, project: str, platform: Any, task_tmp: Path
) -> None:
    gate = task_tmp / "gate"
    first = submit_job(admin, project, payload={"gate": str(gate)})
    job = submit_job(
        admin, project, depends_on=[first], fan_out={"items": [{"x": 1}, {"x": 2}, {"x": 3}]}
    )
    db = Path(platform.settings.data_dir) / "computalot.db"
    with sqlite3.connect(db, timeout=30) as conn:
        conn.execute(
            'UPDATE tasks SET item = ? WHERE job_id = ? AND "index" = 1',
            ("[" + nested(3000) + "]", job),
        )
    gate.touch()
    ended = wait_job(admin, job)
    assert ended["status"] == "partial", ended
    listed = admin.get(f"{API}/jobs/{job}/tasks")
    assert listed.status_code == 200, listed.text[:500]
    tasks = listed.json()["tasks"]
    assert [t["status"] for t in tasks] == ["completed", "failed", "completed"]
    assert tasks[1]["error"]["code"] == "unreadable_task"
    results = admin.get(f"{API}/results/{job}").json()["results"]
    assert [r["result"] and r["result"]["x"] for r in results] == [1, None, 3]


def test_integers_beyond_64_bits_come_back_exactly(admin: httpx.Client, project: str) -> None:
    big = 123456789012345678901234567890
    job_id = submit_job(admin, project, meta={"n": big, "neg": -big}, payload={"x": big})
    for answer in (admin.get(f"{API}/jobs/{job_id}"), admin.get(f"{API}/jobs")):
        assert f'"n":{big}' in answer.text.replace(" ", ""), answer.text[:300]
        assert f'"neg":{-big}' in answer.text.replace(" ", "")
    ended = wait_job(admin, job_id)
    assert ended["meta"] == {"n": big, "neg": -big}
    results = admin.get(f"{API}/results/{job_id}")
    assert f'"x":{big}' in results.text.replace(" ", ""), results.text[:300]
