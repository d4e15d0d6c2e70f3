"""Many SSE streams on one replica, through real HTTP and real Ray (docs/llms-full.md, "Streaming").

The runners print a progress line every 0.2 s until the test creates their gate file, so the
jobs are running for as long as a test needs them to.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.helpers import events_of, submit_job, wait_for

API = "/api/v1"

RUNNER = r"""
import json, os, sys, time

p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
deadline = time.time() + 150
n = 0
while not os.path.exists(p["gate"]):
    if time.time() > deadline:
        sys.exit("gate never opened")
    n += 1
    print("COMPUTALOT_PROGRESS:" + json.dumps({"n": n}), flush=True)
    time.sleep(0.2)
with open(os.environ["COMPUTALOT_TASK_RESULT"], "w") as fh:
    json.dump({"n": n}, fh)
"""


@pytest.fixture(scope="module")
def project(admin: httpx.Client, make_project: Any) -> str:
    return str(make_project(admin, {"runner.py": RUNNER}))


@dataclass
class Follower:
    """One open stream's frames, filled by :func:`follow` as they arrive."""

    job_id: str
    frames: list[dict[str, Any]] = field(default_factory=list)
    status: int | None = None

    @property
    def ids(self) -> list[int]:
        return [f["id"] for f in self.frames if "id" in f]


async def follow(
    client: httpx.AsyncClient, follower: Follower, headers: dict[str, str] | None = None
) -> None:
    """Read one job's stream until the server closes it (or ``stop`` is set by cancelling)."""
    async with client.stream(
        "GET", f"{API}/jobs/{follower.job_id}/stream", headers=headers or {}
    ) as answer:
        follower.status = answer.status_code
        if answer.status_code != 200:
            return
        frame: dict[str, Any] = {}
        async for line in answer.aiter_lines():
            if line == "":
                if frame:
                    follower.frames.append(frame)
                frame = {}
            elif line.startswith(":"):
                continue
            else:
                name, _, value = line.partition(": ")
                if name == "data":
                    frame["data"] = json.loads(value)
                elif name == "id":
                    frame["id"] = int(value)
                else:
                    frame[name] = value


def start_jobs(admin: httpx.Client, project: str, gate: Path, n: int) -> list[str]:
    jobs = [
        submit_job(admin, project, payload={"gate": str(gate)}, timeout_s=180) for _ in range(n)
    ]
    wait_for(
        lambda: all(admin.get(f"{API}/jobs/{j}").json()["status"] == "running" for j in jobs),
        "the jobs to run",
    )
    return jobs


def async_client(base_url: str, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(120.0, read=120.0),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=20),
    )


async def until(condition: Any, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


def gauge(metrics_text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", metrics_text, re.M)
    assert found, f"{name} is not in /metrics"
    return float(found.group(1))


async def test_240_streams_on_running_jobs_get_every_event_in_order_and_leave_the_api_fast(
    platform: Any, admin: httpx.Client, project: str, task_tmp: Path
) -> None:
    gate = task_tmp / "gate"
    jobs = start_jobs(admin, project, gate, 3)
    followers = [Follower(jobs[i % len(jobs)]) for i in range(240)]
    async with async_client(platform.url, platform.admin_key) as client:
        tasks = [asyncio.create_task(follow(client, f)) for f in followers]
        await until(lambda: all(f.frames for f in followers), "every stream to open")
        assert {f.status for f in followers} == {200}
        newest = max(events_of(admin, j)[-1]["id"] for j in jobs)
        # Every stream gets events written after all of them were open: they are live.
        await until(lambda: all(f.ids and f.ids[-1] > newest for f in followers), "live events")

        metrics = (await client.get("/metrics")).text
        assert gauge(metrics, "computalot_sse_streams") >= len(followers)
        in_use = gauge(metrics, "computalot_db_connections_in_use")
        assert in_use <= 6, f"{in_use} connections held with {len(followers)} streams open"
        took = []
        for job_id in jobs * 5:
            t0 = time.monotonic()
            answer = await client.get(f"{API}/jobs/{job_id}")
            took.append(time.monotonic() - t0)
            assert answer.status_code == 200
        assert max(took) < 5.0, took

        gate.touch()
        await asyncio.wait_for(asyncio.gather(*tasks), 90)
    stored = {j: [e["id"] for e in events_of(admin, j)] for j in jobs}
    for f in followers:
        assert f.ids == stored[f.job_id], f.job_id
        assert f.frames[-1]["event"] == "end"


async def test_a_revoked_keys_open_stream_gets_an_error_event_and_closes(
    platform: Any, admin: httpx.Client, project: str, task_tmp: Path
) -> None:
    account_id = admin.get(f"{API}/account").json()["id"]
    made = admin.post(f"{API}/admin/accounts/{account_id}/keys", json={})
    assert made.status_code == 201, made.text
    token, key_id = made.json()["key"]["token"], made.json()["key"]["id"]
    gate = task_tmp / "gate"
    (job_id,) = start_jobs(admin, project, gate, 1)
    doomed, kept = Follower(job_id), Follower(job_id)
    async with (
        async_client(platform.url, token) as revoked_client,
        async_client(platform.url, platform.admin_key) as client,
    ):
        doomed_task = asyncio.create_task(follow(revoked_client, doomed))
        kept_task = asyncio.create_task(follow(client, kept))
        await until(lambda: len(doomed.ids) > 2 and len(kept.ids) > 2, "both streams to flow")
        revoked = admin.post(f"{API}/admin/keys/{key_id}/revoke")
        assert revoked.status_code == 200, revoked.text
        t0 = time.monotonic()
        await asyncio.wait_for(doomed_task, 15)
        assert time.monotonic() - t0 < 10
        assert doomed.frames[-1]["event"] == "error", doomed.frames[-3:]
        assert doomed.frames[-1]["data"]["error"]["code"] == "unauthorized"
        assert not kept_task.done(), "the other key's stream closed too"
        again = await revoked_client.get(f"{API}/jobs/{job_id}/stream")
        assert again.status_code == 401
        gate.touch()
        await asyncio.wait_for(kept_task, 60)
    assert kept.frames[-1]["event"] == "end"


async def test_resuming_a_running_jobs_stream_with_last_event_id_loses_and_repeats_nothing(
    platform: Any, admin: httpx.Client, project: str, task_tmp: Path
) -> None:
    gate = task_tmp / "gate"
    (job_id,) = start_jobs(admin, project, gate, 1)
    first, second = Follower(job_id), Follower(job_id)
    async with async_client(platform.url, platform.admin_key) as client:
        task = asyncio.create_task(follow(client, first))
        await until(lambda: len(first.ids) >= 3, "a few events")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        last = first.ids[-1]
        await until(lambda: events_of(admin, job_id)[-1]["id"] > last + 2, "events while away")
        headers = {"Last-Event-ID": str(last)}
        task = asyncio.create_task(follow(client, second, headers))
        await until(lambda: len(second.ids) >= 3, "the resumed stream")
        gate.touch()
        await asyncio.wait_for(task, 60)
    assert "id" in second.frames[0], "a resumed stream starts without a snapshot"
    ids = first.ids + second.ids
    assert all(a < b for a, b in itertools.pairwise(ids)), ids
    assert ids == [e["id"] for e in events_of(admin, job_id)]
    assert second.frames[-1]["event"] == "end"
