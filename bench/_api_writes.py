"""Writes under read load, for bench/api_throughput.py (issue #18 §3: "writes stay correct
under the same load").

While wrk hammers ``GET /jobs/:id``, client threads submit small jobs, each with its own
``Idempotency-Key``; some keys are sent twice at the same moment from two threads (the second
must get the first's job, not a new one or an error) and some jobs are cancelled right after
their submit. Then :func:`check` reads everything back: every key got exactly one job (one
201, the rest 200 with the same id), the tag's ``/jobs`` list holds exactly those jobs, each
one ended (cancelled where its cancel landed first, else completed, with one task), and
nothing answered a 5xx.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

TERMINAL = frozenset({"completed", "partial", "failed", "cancelled"})


@dataclass
class WriteLoad:
    """What the client saw: per key its answers ``(status, job id)``; cancels' answers."""

    tag: str
    n_jobs: int
    answers: dict[str, list[tuple[int, str | None]]] = field(default_factory=dict)
    cancels: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, what: str, answer: httpx.Response) -> None:
        if answer.status_code >= 300:
            with self.lock:
                self.errors.append(f"{what}: {answer.status_code} {answer.text[:200]}")


def run_writes(
    url: str,
    token: str,
    body: dict[str, Any],
    *,
    n_jobs: int,
    threads: int = 4,
    resend_every: int = 4,
    cancel_every: int = 3,
) -> WriteLoad:
    """Submit ``n_jobs`` jobs of ``body`` (tagged with a fresh tag) from ``threads`` threads;
    every ``resend_every``-th key is sent twice at once, every ``cancel_every``-th job is
    cancelled right after its submit."""
    load = WriteLoad(tag=f"writes-{uuid.uuid4().hex[:8]}", n_jobs=n_jobs)
    headers = {"Authorization": f"Bearer {token}"}
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, headers=headers, timeout=60)
        return local.client  # type: ignore[no-any-return]

    def submit(i: int, key: str) -> None:
        job = {**body, "tags": [load.tag], "payload": {**body.get("payload", {}), "i": i}}
        answer = client().post("/api/v1/jobs", json=job, headers={"Idempotency-Key": key})
        load.note(f"POST /jobs key {key}", answer)
        job_id = answer.json().get("id") if answer.status_code < 300 else None
        with load.lock:
            load.answers.setdefault(key, []).append((answer.status_code, job_id))
        if job_id and i % cancel_every == 0 and key not in load.cancels:
            with load.lock:
                if key in load.cancels:
                    return
                load.cancels[key] = (0, None)
            cancel = client().put(f"/api/v1/jobs/{job_id}/cancel")
            load.note(f"PUT /jobs/{job_id}/cancel", cancel)
            status = cancel.json().get("status") if cancel.status_code < 300 else None
            with load.lock:
                load.cancels[key] = (cancel.status_code, status)

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = []
        for i in range(n_jobs):
            key = f"{load.tag}-{i}"
            futures.append(pool.submit(submit, i, key))
            if i % resend_every == 0:  # the same key again, at the same moment
                futures.append(pool.submit(submit, i, key))
        for future in futures:
            try:
                future.result()
            except Exception as exc:  # a dropped connection is a finding, not a crash
                load.errors.append(f"client error: {type(exc).__name__}: {exc}")
    load.seconds = time.monotonic() - start
    return load


def _tagged_jobs(client: httpx.Client, tag: str) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"tag": tag, "limit": 500}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/jobs", params=params)
        page.raise_for_status()
        jobs += page.json()["jobs"]
        cursor = page.json()["next_cursor"]
        if not cursor:
            return jobs


def check(url: str, token: str, load: WriteLoad, *, timeout_s: float = 180.0) -> list[str]:
    """Every problem found (empty: the writes were correct), once every job has ended."""
    problems = list(load.errors)
    ids: dict[str, str] = {}
    for key, answers in sorted(load.answers.items()):
        statuses = Counter(status for status, _ in answers)
        job_ids = {job_id for _, job_id in answers}
        if statuses[201] != 1 or len(job_ids) != 1 or None in job_ids:
            problems.append(f"key {key}: answers {answers} (want one 201, one job id)")
        elif len(answers) > 1 and set(statuses) - {200, 201}:
            problems.append(f"key {key}: a resend answered {answers}")
        if job_ids - {None}:
            ids[key] = sorted(j for j in job_ids if j)[0]
    if len(load.answers) != load.n_jobs:
        problems.append(f"{len(load.answers)} keys answered of {load.n_jobs} submitted")
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
        deadline = time.monotonic() + timeout_s
        while True:
            jobs = {job["id"]: job for job in _tagged_jobs(client, load.tag)}
            if all(j["status"] in TERMINAL for j in jobs.values()):
                break
            if time.monotonic() > deadline:
                open_ = [i for i, j in jobs.items() if j["status"] not in TERMINAL]
                problems.append(f"{len(open_)} jobs still open after {timeout_s:.0f} s")
                break
            time.sleep(0.5)
    if set(jobs) != set(ids.values()):
        problems.append(
            f"the tag lists {len(jobs)} jobs, the submits got {len(set(ids.values()))} "
            f"({len(set(jobs) - set(ids.values()))} unexpected, "
            f"{len(set(ids.values()) - set(jobs))} missing)"
        )
    for key, job_id in ids.items():
        job = jobs.get(job_id)
        if job is None:
            continue
        cancel_code, cancel_status = load.cancels.get(key, (None, None))
        if job["task_counts"]["total"] != 1:
            problems.append(f"job {job_id}: {job['task_counts']['total']} tasks (want 1)")
        if cancel_code is None and job["status"] != "completed":
            problems.append(f"job {job_id} (not cancelled) ended {job['status']}")
        if cancel_code is not None and job["status"] != cancel_status:
            problems.append(f"job {job_id}: cancel answered {cancel_status}, ended {job['status']}")
    return problems


def summary(load: WriteLoad) -> str:
    resent = sum(1 for answers in load.answers.values() if len(answers) > 1)
    cancelled = sum(1 for _code, status in load.cancels.values() if status == "cancelled")
    return (
        f"{load.n_jobs} jobs submitted in {load.seconds:.1f} s ({resent} keys sent twice at "
        f"once), {len(load.cancels)} cancels ({cancelled} landed before the job ended)"
    )
