"""Two API replicas on one PostgreSQL store (docs/metrics.md, docs/operating.md).

A second platform runs in a subprocess (``computalot up`` with ``COMPUTALOT_SERVE_REPLICAS=2``
and its database on the session's PostgreSQL cluster): the session's in-process platform owns
this process's Ray. Every answer names its replica (``X-Computalot-Replica``), so the tests
show that both replicas answered: the project quickstart, an idempotent submit sent many
times at once, an SSE stream resumed with ``Last-Event-ID`` on the other replica, and
``/metrics`` from either replica answering the whole platform's figures.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_jobs_streams import sse
from tests.integration.test_runner_isolation import _quiet_port
from tests.support.helpers import events_of, make_tarball, wait_job
from tests.support.postgres import create_database

API = "/api/v1"
REPLICA = "x-computalot-replica"
STREAM_TIMEOUT = httpx.Timeout(120.0, read=120.0)
PROGRESS_SCRIPT = """\
import json, os, time
steps = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))["steps"]
for step in range(steps):
    print("COMPUTALOT_PROGRESS:" + json.dumps({"step": step}), flush=True)
    time.sleep(0.4)
json.dump({"done": True}, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))
"""
ECHO_SCRIPT = """\
import json, os
p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
json.dump({"echo": p}, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))
"""


#: Two platforms of its own on one PostgreSQL store (tests/support/beside.py).
pytestmark = pytest.mark.own_platform


@dataclass
class Replicated:
    url: str
    client: httpx.Client
    jobs: list[str] = field(default_factory=list)  # every job the module submitted


def _stop(up: subprocess.Popen[bytes]) -> None:
    """SIGINT, wait; the whole process group is killed if it hangs."""
    up.send_signal(signal.SIGINT)
    try:
        up.wait(timeout=120)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(up.pid, signal.SIGKILL)
        up.wait(timeout=30)


@pytest.fixture(scope="module")
def replicated(pg_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicated]:
    if pg_cluster is None:
        pytest.skip("no PostgreSQL server here")
    root = tmp_path_factory.mktemp("replicas")
    data_dir, port = root / "data", _quiet_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPUTALOT_", "RAY_"))}
    env.update(
        {
            "COMPUTALOT_DATABASE_URL": create_database(pg_cluster, f"rep_{uuid.uuid4().hex[:10]}"),
            "COMPUTALOT_SERVE_REPLICAS": "2",
            "COMPUTALOT_RATE_LIMIT_PER_MINUTE": "100000",
            "COMPUTALOT_DISPATCH_INTERVAL_S": "0.2",
            "COMPUTALOT_METRICS_JOBS_REFRESH_S": "1",
            "RAY_SERVE_HAPROXY_STATS_PORT": str(_quiet_port()),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(_quiet_port()),
        }
    )
    command = [str(Path(sys.executable).parent / "computalot"), "up", "--data-dir", str(data_dir)]
    command += ["--port", str(port), "--num-cpus", "2"]
    url = f"http://127.0.0.1:{port}"
    with (root / "up.out").open("wb") as out, (root / "up.err").open("wb") as err:
        up = subprocess.Popen(command, env=env, stdout=out, stderr=err, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not _ready(url):
            assert up.poll() is None, (root / "up.err").read_text()[-3000:]
            assert time.monotonic() < deadline, (root / "up.err").read_text()[-3000:]
            time.sleep(1)
        key = (data_dir / "admin_key").read_text().strip()
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            replicated = Replicated(url, client)
            _until_both_replicas_serve(replicated)
            yield replicated
    finally:
        _stop(up)


def _until_both_replicas_serve(replicated: Replicated) -> None:
    """/ready answers once one replica runs; the second may start later, and the ingress
    reloads when it joins (a connection may drop then): wait until both have answered."""
    seen: set[str] = set()
    deadline = time.monotonic() + 180
    while len(seen) < 2:
        assert time.monotonic() < deadline, f"only replica {seen} answered"
        try:
            answers = at_once(replicated, 16, lambda c: c.get("/health", timeout=60))
        except httpx.TransportError:
            continue
        seen |= {a.headers[REPLICA] for a in answers if a.status_code == 200}
    time.sleep(2)  # the ingress's reload for the second replica has settled


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def replicas_of(answers: list[httpx.Response]) -> set[str]:
    return {a.headers[REPLICA] for a in answers}


def at_once(replicated: Replicated, n: int, send: Any) -> list[httpx.Response]:
    """``send(client)`` n times from 8 threads, each with its own connection: HAProxy's
    ``leastconn`` gives requests that overlap to different replicas."""

    def one(_: int) -> httpx.Response:
        with httpx.Client(base_url=replicated.url, headers=replicated.client.headers) as c:
            return send(c)  # type: ignore[no-any-return]

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def test_both_replicas_answer(replicated: Replicated) -> None:
    answers = at_once(replicated, 32, lambda c: c.get(f"{API}/account", timeout=60))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert len(replicas_of(answers)) == 2, replicas_of(answers)


def test_project_quickstart(replicated: Replicated) -> None:
    client = replicated.client
    name = f"quick-{uuid.uuid4().hex[:8]}"
    assert client.post(f"{API}/projects", json={"name": name}).status_code == 201
    pushed = client.post(
        f"{API}/projects/{name}/push", content=make_tarball({"script.py": ECHO_SCRIPT})
    )
    assert pushed.status_code == 200, pushed.text
    job = client.post(
        f"{API}/jobs",
        json={"project": name, "runner_command": ["python3", "script.py"], "payload": {"x": 1}},
    )
    assert job.status_code == 201, job.text
    replicated.jobs.append(job.json()["id"])
    end = wait_job(client, job.json()["id"])
    assert end["status"] == "completed", end
    results = client.get(f"{API}/results/{job.json()['id']}").json()
    assert results["aggregate_result"] == {"echo": {"x": 1}}


@pytest.fixture(scope="module")
def progress_project(replicated: Replicated) -> str:
    name = f"prog-{uuid.uuid4().hex[:8]}"
    client = replicated.client
    assert client.post(f"{API}/projects", json={"name": name}).status_code == 201
    files = {"runner.py": PROGRESS_SCRIPT}
    pushed = client.post(f"{API}/projects/{name}/push", content=make_tarball(files))
    assert pushed.status_code == 200, pushed.text
    return name


def test_an_idempotent_submit_sent_many_times_across_replicas_is_one_job(
    replicated: Replicated, progress_project: str
) -> None:
    body = {
        "project": progress_project,
        "runner_command": ["python3", "runner.py"],
        "payload": {"steps": 1},
    }
    key = f"k-{uuid.uuid4().hex}"

    def send(c: httpx.Client) -> httpx.Response:
        return c.post(f"{API}/jobs", json=body, headers={"Idempotency-Key": key}, timeout=60)

    answers = at_once(replicated, 40, send)
    assert {a.status_code for a in answers} <= {200, 201}, [a.text for a in answers]
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1, ids
    assert len(replicas_of(answers)) == 2, replicas_of(answers)
    replicated.jobs.append(ids.pop())
    assert wait_job(replicated.client, replicated.jobs[-1])["status"] == "completed"


def test_a_stream_resumed_on_the_other_replica_misses_no_event(
    replicated: Replicated, progress_project: str
) -> None:
    client = replicated.client
    answer = client.post(
        f"{API}/jobs",
        json={
            "project": progress_project,
            "runner_command": ["python3", "runner.py"],
            "payload": {"steps": 12},
        },
    )
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["id"]
    replicated.jobs.append(job_id)
    stream = f"{API}/jobs/{job_id}/stream"
    first: list[dict[str, Any]] = []
    rest: list[dict[str, Any]] = []
    with client.stream("GET", stream, timeout=STREAM_TIMEOUT) as opened:
        assert opened.status_code == 200
        first_replica = opened.headers[REPLICA]
        frames = sse(opened)
        for frame in frames:
            first.append(frame)
            if frame.get("event") == "progress" and len([f for f in first if "id" in f]) >= 4:
                break
        assert first and first[-1].get("event") == "progress", first
        last_id = max(f["id"] for f in first if "id" in f)
        # Reconnect while the first stream still holds its replica (HAProxy's leastconn then
        # prefers the other), as a client does whose connection broke, until the other takes it.
        for _attempt in range(50):
            headers = {"Last-Event-ID": str(last_id)}
            with client.stream("GET", stream, headers=headers, timeout=STREAM_TIMEOUT) as again:
                assert again.status_code == 200
                if again.headers[REPLICA] == first_replica:
                    continue
                opened.close()  # the first connection is gone for good
                rest = list(sse(again))
                break
        else:
            raise AssertionError("the other replica never took the resumed stream")
    assert rest and rest[-1]["event"] == "end", rest
    got = [f["id"] for f in first + rest if "id" in f]
    stored = [e["id"] for e in events_of(client, job_id)]
    assert got == stored, (got, stored)
    progress = [f["data"]["progress"]["step"] for f in first + rest if f["event"] == "progress"]
    assert progress == list(range(12)), progress


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of sample ``name``'s values whose labels include ``labels``."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def test_metrics_from_either_replica_are_the_platform_s(replicated: Replicated) -> None:
    client = replicated.client

    def scrape() -> httpx.Response:
        answer = client.get("/metrics")  # from loopback: no token needed
        assert answer.status_code == 200, answer.text
        return answer

    def account_requests(text: str) -> float:
        return metric(text, "computalot_http_requests_total", route=f"{API}/account", status="200")

    before = account_requests(scrape().text)
    sent = at_once(replicated, 30, lambda c: c.get(f"{API}/account", timeout=60))
    assert len(replicas_of(sent)) == 2 and all(a.status_code == 200 for a in sent)
    # Each replica pushes every second: soon every scrape, from either, counts all 30.
    exact: set[str] = set()
    deadline = time.monotonic() + 60
    while exact != replicas_of(sent):
        assert time.monotonic() < deadline, f"only {exact} counted all requests"
        answer = scrape()
        count = account_requests(answer.text)
        assert count <= before + len(sent), answer.text  # never more than were sent
        if count == before + len(sent):
            exact.add(answer.headers[REPLICA])
        time.sleep(0.2)

    text = scrape().text
    assert metric(text, "computalot_metrics_board_up") == 1
    assert metric(text, "computalot_metrics_sources", kind="api") == 2
    assert metric(text, "computalot_metrics_sources", kind="engine") == 1
    # The engine's figures: every task of the module's jobs was dispatched and ended.
    launched = metric(text, "computalot_dispatch_latency_seconds_count")
    ended = metric(text, "computalot_task_attempt_duration_seconds_count")
    assert launched >= len(replicated.jobs) and ended >= len(replicated.jobs), text
    assert metric(text, "computalot_store_statement_duration_seconds_count", operation="select")
    # Jobs by status are the store's (terminal counts are re-read every second here).
    statuses = Counter(client.get(f"{API}/jobs/{j}").json()["status"] for j in replicated.jobs)
    deadline = time.monotonic() + 30
    while True:
        text = scrape().text
        shown = {s: metric(text, "computalot_jobs", status=s) for s in statuses}
        total = metric(text, "computalot_jobs")
        if (shown == statuses and total == len(replicated.jobs)) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert shown == statuses and total == len(replicated.jobs), text
    assert metric(text, "computalot_tasks", status="running") == 0
    assert metric(text, "computalot_sse_streams") == 0
