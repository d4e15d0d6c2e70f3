"""Every paged route reads its cursor with the one codec: junk is 400 ``bad_request`` naming
``cursor`` (docs/llms-full.md, "Conventions"), and a real cursor pages."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.helpers import assert_envelope, submit_job, wait_job

API = "/api/v1"
RUNNER = 'import json, os\njson.dump({"ok": 1}, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))\n'
JUNK = ["not-a-cursor", "WyJ4Il0", "W10", "W251bGxd", "x" * 600, "WzEsMiwzXQ"]


@pytest.fixture(scope="module")
def job_id(admin: httpx.Client, make_project: Any) -> str:
    project = make_project(admin, {"runner.py": RUNNER})
    wait_job(admin, submit_job(admin, project))  # so /jobs has a second page too
    job = submit_job(admin, project, fan_out={"items": [{"i": i} for i in range(3)]})
    wait_job(admin, job)
    return job


def paged_routes(job_id: str) -> list[str]:
    return [
        f"{API}/jobs",
        f"{API}/jobs/{job_id}/tasks",
        f"{API}/jobs/{job_id}/output",
        f"{API}/results/{job_id}",
    ]


def test_a_bad_cursor_is_400_naming_cursor_on_every_paged_route(
    admin: httpx.Client, job_id: str
) -> None:
    for path in paged_routes(job_id):
        for cursor in JUNK:
            error = assert_envelope(admin.get(path, params={"cursor": cursor}), 400, "bad_request")
            assert error["details"][0]["loc"] == ["cursor"], (path, cursor)


def test_a_real_cursor_pages_on_every_paged_route(admin: httpx.Client, job_id: str) -> None:
    for path in paged_routes(job_id):
        first = admin.get(path, params={"limit": 1})
        assert first.status_code == 200, first.text
        cursor = first.json()["next_cursor"]
        assert cursor, path
        second = admin.get(path, params={"limit": 1, "cursor": cursor})
        assert second.status_code == 200, (path, second.text)
