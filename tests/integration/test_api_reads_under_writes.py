"""Writes stay correct while the hot reads are hammered (issue #18 §3; the benchmark's bigger
run of the same check is ``bench/_api_writes.py``).

Reader threads read a finished job, its results page and the ``/jobs`` list over real HTTP
while writer threads submit small jobs, each with an ``Idempotency-Key`` (some keys sent twice
at the same moment from two threads), and cancel some right after their submit. Correctness
only, not timing: every read answered 200 with the right job; every key got exactly one job;
the tag's list holds exactly those jobs; each ended as its cancel said (or completed); and the
replica's cached answers never showed a job state older than the store's.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.support.helpers import wait_job

API = "/api/v1"
RUNNER = """
import json, os
p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
with open(os.environ["COMPUTALOT_TASK_RESULT"], "w") as fh:
    json.dump({"echo": p}, fh)
"""
N_JOBS = 16
RESEND_EVERY = 4  # keys 0, 4, 8, 12 are sent twice at once
CANCEL_EVERY = 3  # jobs 0, 3, 6, ... are cancelled right after their submit


def test_submits_and_cancels_stay_correct_under_read_load(
    new_account: Callable[..., httpx.Client], make_project: Callable[..., str], base_url: str
) -> None:
    client = new_account()
    project = make_project(client, {"r.py": RUNNER})
    body = {"project": project, "runner_command": ["python3", "r.py"]}
    first = client.post(f"{API}/jobs", json={**body, "payload": {"i": -1}})
    assert first.status_code == 201, first.text
    done = wait_job(client, first.json()["id"])
    assert done["status"] == "completed"
    job_id = done["id"]
    headers = {"Authorization": f"Bearer {client.token}"}  # type: ignore[attr-defined]
    tag = f"w-{uuid.uuid4().hex[:8]}"

    stop = threading.Event()
    reads: Counter[str] = Counter()
    wrong: list[str] = []

    def read() -> None:
        with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
            while not stop.is_set():
                for path in (f"/jobs/{job_id}", f"/results/{job_id}", "/jobs?limit=20"):
                    answer = http.get(API + path)
                    reads[f"{path.split('?')[0]} {answer.status_code}"] += 1
                    if answer.status_code != 200:
                        wrong.append(f"GET {path}: {answer.status_code} {answer.text[:200]}")
                    elif path.startswith("/jobs/") and answer.json()["id"] != job_id:
                        wrong.append(f"GET {path} answered job {answer.json()['id']}")

    answers: dict[str, list[tuple[int, str | None]]] = {}
    cancels: dict[str, str | None] = {}
    lock = threading.Lock()

    def submit(i: int) -> None:
        key = f"{tag}-{i}"
        with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
            job = {**body, "tags": [tag], "payload": {"i": i}}
            answer = http.post(f"{API}/jobs", json=job, headers={"Idempotency-Key": key})
            got = answer.json().get("id") if answer.status_code < 300 else answer.text
            with lock:
                answers.setdefault(key, []).append((answer.status_code, got))
                cancel = i % CANCEL_EVERY == 0 and key not in cancels and answer.is_success
                if cancel:
                    cancels[key] = None
            if cancel:
                ended = http.put(f"{API}/jobs/{got}/cancel")
                assert ended.status_code == 200, ended.text
                cancels[key] = ended.json()["status"]

    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            futures = []
            for i in range(N_JOBS):
                futures.append(pool.submit(submit, i))
                if i % RESEND_EVERY == 0:
                    futures.append(pool.submit(submit, i))
            for future in futures:
                future.result()
    finally:
        stop.set()
        for thread in readers:
            thread.join()

    assert not wrong, wrong[:5]
    assert reads[f"/jobs/{job_id} 200"] > 0 and reads[f"/results/{job_id} 200"] > 0
    assert len(answers) == N_JOBS
    ids: dict[str, str] = {}
    for key, got in answers.items():
        statuses = Counter(status for status, _ in got)
        assert statuses[201] == 1 and set(statuses) <= {200, 201}, (key, got)
        assert len({job for _, job in got}) == 1, (key, got)  # a resend got the first's job
        ids[key] = str(got[0][1])
    assert sum(len(got) for got in answers.values()) == N_JOBS + len(range(0, N_JOBS, RESEND_EVERY))

    ended = {job: wait_job(client, job) for job in ids.values()}
    listed = client.get(f"{API}/jobs", params={"tag": tag, "limit": 100}).json()["jobs"]
    assert sorted(j["id"] for j in listed) == sorted(ids.values())
    for key, job in ids.items():
        final = ended[job]
        assert final["task_counts"]["total"] == 1
        assert final["status"] == cancels.get(key, "completed"), (key, final["status"])
        # The replica's answers (cached per row) show the state the store holds now.
        for path in (f"/jobs/{job}", f"/results/{job}"):
            again = client.get(API + path).json()
            assert again["status"] == final["status"], (path, again["status"])
    listed_states: dict[str, Any] = {j["id"]: j["status"] for j in listed}
    assert Counter(listed_states.values()) == Counter(j["status"] for j in ended.values())
