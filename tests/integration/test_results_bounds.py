"""Big results through real Ray and real HTTP: stored once, answered once, paged by bytes,
capped per task and per job, depth-checked at the worker; artifacts written off the loop.

The session's platform runs with ``COMPUTALOT_MAX_JOB_RESULT_BYTES`` = 40 MiB (conftest) so
the per-job cap is reached with a few tens of megabytes; pages are the default 16 MiB.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.helpers import submit_job, wait_job

API = "/api/v1"
MiB = 1024 * 1024

RUNNER = r"""
import json, os

p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
out = os.environ["COMPUTALOT_TASK_RESULT"]
index = int(os.environ["COMPUTALOT_TASK_INDEX"])
mode = p.get("mode", "big")
if mode == "big":  # {"index": i, "pad": "<mb MiB of one letter per task>"}
    letter = "abcdefghijklmnopqrstuvwxyz"[index % 26]
    with open(out, "w") as fh:
        fh.write('{"index": %d, "pad": "%s"}' % (index, letter * int(p["mb"] * 1024 * 1024)))
elif mode == "sparse":  # a file of p["bytes"] zero bytes that takes no disk
    with open(out, "wb") as fh:
        fh.truncate(p["bytes"])
elif mode == "deep":
    with open(out, "w") as fh:
        fh.write('{"a": ' + "[" * p["levels"] + "]" * p["levels"] + "}")
elif mode == "artifact":
    with open(os.path.join(os.environ["COMPUTALOT_ARTIFACT_DIR"], "table.csv"), "w") as fh:
        fh.write("a,b\n1,2\n")
    with open(out, "w") as fh:
        json.dump({"ok": True}, fh)
"""


@pytest.fixture(scope="module")
def client(new_account: Callable[..., httpx.Client]) -> httpx.Client:
    return new_account()


@pytest.fixture(scope="module")
def project(client: httpx.Client, make_project: Callable[..., str]) -> str:
    return make_project(client, {"runner.py": RUNNER})


def database_bytes() -> int:
    """The SQLite store's size with its WAL folded in (a checkpoint that truncates the WAL), so
    a result counts once whether it sits in the WAL or the main file."""
    path = Path(os.environ["COMPUTALOT_DATA_DIR"]) / "computalot.db"
    conn = sqlite3.connect(path, timeout=30)
    try:
        for _ in range(100):  # a reader holding an old snapshot keeps the WAL for a moment
            busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                break
            time.sleep(0.1)
    finally:
        conn.close()
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def results(client: httpx.Client, job_id: str, **params: Any) -> httpx.Response:
    answer = client.get(f"{API}/results/{job_id}", params=params, timeout=120)
    assert answer.status_code == 200, answer.text[:500]
    return answer


def every_element(client: httpx.Client, job_id: str) -> tuple[list[int], list[dict[str, Any]]]:
    """(elements per page, every element) of the job's results, following ``next_cursor``."""
    pages: list[int] = []
    elements: list[dict[str, Any]] = []
    cursor = None
    while True:
        body = results(client, job_id, **({"cursor": cursor} if cursor else {})).json()
        pages.append(len(body["results"]))
        elements += body["results"]
        cursor = body["next_cursor"]
        if cursor is None:
            return pages, elements


def test_a_big_result_is_stored_once_and_answered_once(client: httpx.Client, project: str) -> None:
    size = 24 * MiB
    before = database_bytes()
    job_id = submit_job(client, project, payload={"mb": 24})
    assert wait_job(client, job_id)["status"] == "completed"
    growth = database_bytes() - before
    assert 0.9 * size < growth < 1.25 * size, f"database grew {growth} bytes for {size}"
    answer = results(client, job_id)
    assert len(answer.content) < size + 64 * 1024  # once: no second copy in the aggregate
    body = answer.json()
    (element,) = body["results"]
    assert element["result"]["index"] == 0 and len(element["result"]["pad"]) == size
    assert body["aggregate_result"] is None
    omitted = body["aggregate_omitted"]
    assert omitted["reason"] == "too_large" and omitted["result_bytes"] > size
    assert "next_cursor" in omitted["recommended_action"]


def test_big_results_are_paged_by_bytes_and_each_is_reachable(
    client: httpx.Client, project: str
) -> None:
    job_id = submit_job(
        client, project, payload={"mb": 6}, fan_out={"items": [{"k": i} for i in range(4)]}
    )
    assert wait_job(client, job_id)["status"] == "completed"
    pages, elements = every_element(client, job_id)
    seen = [(e["index"], e["result"]["index"], e["result"]["pad"][:1]) for e in elements]
    assert pages == [2, 2]  # 16 MiB a page: two 6 MiB results fit, a third does not
    assert seen == [(i, i, "abcd"[i]) for i in range(4)]


def test_a_result_over_the_task_cap_fails_the_task_and_is_not_retried(
    client: httpx.Client, project: str
) -> None:
    job_id = submit_job(
        client, project, payload={"mode": "sparse", "bytes": 64 * MiB + 1}, max_retries=2
    )
    job = wait_job(client, job_id)
    assert job["status"] == "failed"
    (task,) = client.get(f"{API}/jobs/{job_id}/tasks").json()["tasks"]
    assert task["attempt"] == 1
    assert task["error"]["code"] == "result_too_large"
    assert str(64 * MiB) in task["error"]["message"]
    assert "COMPUTALOT_ARTIFACT_DIR" in task["error"]["recommended_action"]


def test_results_past_the_job_cap_fail_their_tasks_alone(
    client: httpx.Client, project: str
) -> None:
    """Three 16 MiB results under a 40 MiB job cap: two are stored, the third is not."""
    job_id = submit_job(
        client, project, payload={"mb": 16}, fan_out={"items": [{"k": i} for i in range(3)]}
    )
    job = wait_job(client, job_id)
    assert job["status"] == "partial"
    assert job["task_counts"]["completed"] == 2 and job["task_counts"]["failed"] == 1
    tasks = client.get(f"{API}/jobs/{job_id}/tasks").json()["tasks"]
    (failed,) = [t for t in tasks if t["status"] == "failed"]
    assert failed["error"]["code"] == "result_too_large"
    assert "limit for all of a job's results" in failed["error"]["message"]
    assert failed["attempt"] == 1
    pages, elements = every_element(client, job_id)
    assert len(pages) >= 2 and max(pages) <= 2  # a 16 MiB result fills a page
    assert [e["index"] for e in elements] == [0, 1, 2]
    for element in elements:
        stored = element["status"] == "completed"
        assert (element["result"] is not None) == stored
        if stored:
            assert len(element["result"]["pad"]) == 16 * MiB


def test_results_nested_past_the_limit_are_invalid(client: httpx.Client, project: str) -> None:
    ok = submit_job(client, project, payload={"mode": "deep", "levels": 99})  # 100 levels
    deep = submit_job(client, project, payload={"mode": "deep", "levels": 100})  # 101
    assert wait_job(client, ok)["status"] == "completed"
    assert wait_job(client, deep)["status"] == "failed"
    (task,) = client.get(f"{API}/jobs/{deep}/tasks").json()["tasks"]
    assert task["error"]["code"] == "invalid_result"
    assert "100 levels" in task["error"]["message"]
    nested = results(client, ok).json()["results"][0]["result"]["a"]
    for _ in range(98):
        (nested,) = nested
    assert nested == []


def test_artifacts_are_written_before_the_attempt_is_recorded(
    client: httpx.Client, project: str
) -> None:
    job_id = submit_job(client, project, payload={"mode": "artifact"})
    assert wait_job(client, job_id)["status"] == "completed"
    (task,) = client.get(f"{API}/jobs/{job_id}/tasks").json()["tasks"]
    assert len(task["artifacts"]) == 1
    stored = client.get(f"{API}/artifacts/{task['artifacts'][0]}")  # its worker stored it
    assert stored.status_code == 200, stored.text
    assert stored.text == "a,b\n1,2\n"
