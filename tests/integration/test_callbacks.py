"""Signed job callbacks through the real platform: real jobs on real Ray, real HTTP receivers.

Receivers are ``http.server`` threads of this process. The test platform allows one private
target network, ``127.0.0.2/32`` (``tests/conftest.py``), so the receivers listen there while
127.0.0.1, [::1], 10/8 and ``localhost`` stay refused exactly as in production. Every receiver
checks the HMAC of the bytes it got with the account's ``callback_secret`` from
``GET /api/v1/account``. The platform retries after 1 s (``COMPUTALOT_CALLBACK_RETRY_S=1,1,1,1``:
five tries).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from computalot import verify_callback_signature
from computalot.callbacks import queue
from computalot.callbacks.delivery import CallbackSender
from computalot.settings import load_settings
from computalot.store.db import Store
from computalot.store.models import Event, Job
from computalot.timeutil import utcnow
from tests.support.helpers import assert_envelope, events_of, submit_job, wait_for, wait_job
from tests.support.store_rows import job_row, new_member

API = "/api/v1"
TRIES = 5  # COMPUTALOT_CALLBACK_RETRY_S has four delays

RUNNER = r"""
import json, os, sys, time

p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
if p.get("mode") == "fail":
    sys.exit(2)
if p.get("mode") == "sleep":
    time.sleep(p["seconds"])
with open(os.environ["COMPUTALOT_TASK_RESULT"], "w") as fh:
    json.dump({"x": p.get("x")}, fh)
"""


@dataclass
class Hit:
    path: str
    headers: Any  # http.server's headers: case-insensitive lookups
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server answering POSTs with ``statuses`` in turn (the last one repeats)."""

    host: str
    statuses: list[int]
    location: str | None = None  # for 3xx answers
    hits: list[Hit] = field(default_factory=list)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.hits.append(Hit(self.path, self.headers, body))
                n = len(receiver.hits)
                status = receiver.statuses[min(n, len(receiver.statuses)) - 1]
                self.send_response(status)
                if receiver.location and 300 <= status < 400:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_PUT = do_POST  # a followed redirect may turn into a GET: count it too

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((self.host, 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook?src=test"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[Any]:
    started: list[Receiver] = []

    def make(*statuses: int, host: str = "127.0.0.2", location: str | None = None) -> Receiver:
        receiver = Receiver(host, list(statuses) or [200], location).start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.stop()


@pytest.fixture(scope="module")
def member(new_account: Any) -> httpx.Client:
    return new_account("member")


@pytest.fixture(scope="module")
def project(member: httpx.Client, make_project: Any) -> str:
    return str(make_project(member, {"runner.py": RUNNER}))


def secret_of(client: httpx.Client) -> str:
    answer = client.get(f"{API}/account")
    assert answer.status_code == 200, answer.text
    return str(answer.json()["callback_secret"])


def callback_events(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events_of(client, job_id) if e["event"] == "callback"]


def wait_callbacks(client: httpx.Client, job_id: str, state: str) -> list[dict[str, Any]]:
    """The job's callback events once the last one says ``state``."""

    def settled() -> list[dict[str, Any]] | None:
        found = callback_events(client, job_id)
        return found if found and found[-1]["state"] == state else None

    return list(wait_for(settled, f"callback of {job_id} {state}", timeout_s=90))


def finished(client: httpx.Client, job_id: str, status: str = "completed") -> dict[str, Any]:
    """Wait for the job's end; it must be ``status`` (else its tasks say why)."""
    job = wait_job(client, job_id)
    if job["status"] != status:
        tasks = client.get(f"{API}/jobs/{job_id}/tasks").json()
        raise AssertionError(f"{job_id} ended {job['status']}, not {status}: {tasks}")
    return job


def get_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    answer = client.get(f"{API}/jobs/{job_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_a_500_is_retried_and_the_second_signed_post_is_delivered(
    member: httpx.Client, project: str, receivers: Any
) -> None:
    receiver = receivers(500, 200)
    job_id = submit_job(member, project, payload={"x": 7}, callback_url=receiver.url)
    finished(member, job_id)
    events = wait_callbacks(member, job_id, "delivered")
    assert [(e["attempt"], e["status_code"], e["delivered"]) for e in events] == [
        (1, 500, False),
        (2, 200, True),
    ]
    assert events[0]["state"] == "pending" and events[0]["next_at"] is not None
    assert events[1]["next_at"] is None
    secret = secret_of(member)
    job = get_job(member, job_id)
    assert job["status"] == "completed"
    assert len(receiver.hits) == 2
    for n, hit in enumerate(receiver.hits, start=1):
        assert hit.path == "/hook?src=test"
        assert verify_callback_signature(secret, hit.body, hit.headers["X-Computalot-Signature"])
        assert not verify_callback_signature(
            "x" + secret, hit.body, hit.headers["X-Computalot-Signature"]
        )
        assert hit.headers["Content-Type"] == "application/json"
        assert hit.headers["X-Computalot-Event"] == "job.finished"
        assert hit.headers["X-Computalot-Delivery"] == f"{job_id}.{n}"
        assert hit.headers["X-Computalot-Attempt"] == str(n)
        assert int(hit.headers["X-Computalot-Timestamp"]) > 1_700_000_000
        assert hit.headers["User-Agent"].startswith("Computalot-Callback/")
        assert hit.headers["Host"] == f"127.0.0.2:{receiver.port}"
        assert json.loads(hit.body) == job  # the terminal job, as GET /jobs/:id answers it


def test_a_receiver_that_always_fails_leaves_the_callback_failed_and_the_job_alone(
    member: httpx.Client, project: str, receivers: Any
) -> None:
    receiver = receivers(503)
    job_id = submit_job(member, project, callback_url=receiver.url)
    finished(member, job_id)
    events = wait_callbacks(member, job_id, "failed")
    assert [e["attempt"] for e in events] == list(range(1, TRIES + 1))
    assert all(e["status_code"] == 503 and not e["delivered"] for e in events)
    assert [e["state"] for e in events] == ["pending"] * (TRIES - 1) + ["failed"]
    assert len(receiver.hits) == TRIES
    assert get_job(member, job_id)["status"] == "completed"


def test_a_redirect_is_a_failure_and_its_target_is_never_hit(
    member: httpx.Client, project: str, receivers: Any
) -> None:
    target = receivers(200)
    redirecting = receivers(302, 200, location=target.url)
    job_id = submit_job(member, project, callback_url=redirecting.url)
    finished(member, job_id)
    events = wait_callbacks(member, job_id, "delivered")
    assert events[0]["status_code"] == 302 and not events[0]["delivered"]
    assert "redirect not followed" in events[0]["error"]
    assert len(redirecting.hits) == 2 and target.hits == []


def test_after_rotation_callbacks_verify_with_the_new_secret_only(
    new_account: Any, make_project: Any, receivers: Any
) -> None:
    client = new_account("member")
    name = make_project(client, {"runner.py": RUNNER})
    old = secret_of(client)
    rotated = client.post(f"{API}/account/callback_secret/rotate")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["callback_secret"]
    assert new != old and len(new) >= 32 and secret_of(client) == new
    assert rotated.json()["id"] == client.account["id"]
    receiver = receivers(200)
    job_id = submit_job(client, name, callback_url=receiver.url)
    finished(client, job_id)
    wait_callbacks(client, job_id, "delivered")
    [hit] = receiver.hits
    signature = hit.headers["X-Computalot-Signature"]
    assert verify_callback_signature(new, hit.body, signature)
    assert not verify_callback_signature(old, hit.body, signature)


def test_a_viewer_cannot_rotate_the_secret(new_account: Any) -> None:
    viewer = new_account("viewer")
    before = secret_of(viewer)
    assert_envelope(viewer.post(f"{API}/account/callback_secret/rotate"), 403, "forbidden")
    assert secret_of(viewer) == before


def test_failed_and_cancelled_jobs_get_callbacks_too(
    member: httpx.Client, project: str, receivers: Any
) -> None:
    receiver = receivers(200)
    failed = submit_job(member, project, payload={"mode": "fail"}, callback_url=receiver.url)
    cancelled = submit_job(
        member, project, payload={"mode": "sleep", "seconds": 120}, callback_url=receiver.url
    )
    wait_for(lambda: get_job(member, cancelled)["status"] == "running", "the job to run")
    assert member.put(f"{API}/jobs/{cancelled}/cancel").status_code == 200
    for job_id, status in ((failed, "failed"), (cancelled, "cancelled")):
        finished(member, job_id, status)
        wait_callbacks(member, job_id, "delivered")
    bodies = {json.loads(h.body)["id"]: json.loads(h.body) for h in receiver.hits}
    assert bodies[failed]["status"] == "failed" and bodies[cancelled]["status"] == "cancelled"
    assert bodies[cancelled]["task_counts"]["running"] == 0


REFUSED = [
    "http://127.0.0.1:8080/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.5/hook",
    "http://[::1]:8080/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://0.0.0.0:8000/",
    "file:///etc/passwd",
    "ftp://x/",
    "http://user:pw@example.com/hook",
    "http://localhost:8080/hook",
    "http://127.1/",
]


@pytest.mark.parametrize("url", REFUSED)
def test_refused_targets_answer_422_and_create_nothing(
    new_account: Any, make_project: Any, url: str
) -> None:
    client = new_account("member")
    name = make_project(client, {"runner.py": RUNNER})
    body = {"project": name, "runner_command": ["python3", "runner.py"], "callback_url": url}
    err = assert_envelope(client.post(f"{API}/jobs", json=body), 422, "validation_error")
    assert err["details"][0]["loc"] == ["callback_url"], err
    assert "public http(s) URL" in err["recommended_action"]
    recipe = client.post(f"{API}/recipes/packing/jobs", json={"payload": {}, "callback_url": url})
    assert recipe.status_code == 422, recipe.text
    assert client.get(f"{API}/jobs").json()["jobs"] == []


def test_batch_submit_checks_each_callback_on_its_own(
    member: httpx.Client, project: str, receivers: Any
) -> None:
    receiver = receivers(200)
    base = {"project": project, "runner_command": ["python3", "runner.py"]}
    answer = member.post(
        f"{API}/jobs/batch",
        json={
            "jobs": [
                {**base, "callback_url": "http://169.254.169.254/"},
                {**base, "callback_url": receiver.url},
            ]
        },
    )
    assert answer.status_code == 201, answer.text
    refused, accepted = answer.json()["jobs"]
    assert refused["error"]["details"][0]["loc"] == ["callback_url"]
    finished(member, accepted["id"])
    wait_callbacks(member, accepted["id"], "delivered")


def test_a_name_that_resolves_to_loopback_is_refused_at_send_time(
    member: httpx.Client, project: str, receivers: Any
) -> None:
    name = socket.gethostname()
    try:
        addresses = {str(i[4][0]) for i in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
    except OSError:
        addresses = set()
    if not addresses or any(not a.startswith("127.") or a == "127.0.0.2" for a in addresses):
        pytest.skip(f"this machine's name {name!r} does not resolve to loopback only")
    receiver = receivers(200, host=sorted(addresses)[0])
    job_id = submit_job(member, project, callback_url=f"http://{name}:{receiver.port}/hook")
    finished(member, job_id)
    [event] = wait_callbacks(member, job_id, "failed")
    assert event["attempt"] == 1 and not event["delivered"]
    assert "refused" in event["error"] and "resolves to" in event["error"]
    assert receiver.hits == []
    assert get_job(member, job_id)["status"] == "completed"


# --- the delivery state lives in the store: a fresh sender resumes it -------------------------


async def _pending_job(store: Store, url: str, attempts: int, lease_left_s: float) -> Job:
    """A finished job whose callback a previous platform process tried ``attempts`` times and
    then died holding a claim that ends in ``lease_left_s`` (negative: already over)."""
    account_id = await new_member(store, "cb")
    now = utcnow()
    job = job_row(
        account_id,
        status="completed",
        n_total=1,
        n_completed=1,
        finished_at=now,
        callback_url=url,
        callback_state="pending",
        callback_attempts=attempts,
        callback_next_at=now + timedelta(seconds=lease_left_s),
    )
    async with store.sessions() as db:
        db.add(job)
        await db.commit()
    return job


async def _stored(store: Store, job_id: str) -> tuple[Job, list[Event]]:
    async with store.sessions() as db:
        job = await db.get(Job, job_id)
        assert job is not None
        events = (await db.execute(Event.__table__.select().where(Event.job_id == job_id))).all()
    return job, list(events)  # type: ignore[arg-type]


async def test_a_fresh_sender_resumes_a_pending_delivery_once(store: Store, receivers: Any) -> None:
    receiver = receivers(200)
    settings = load_settings(callback_allow_networks=["127.0.0.2/32"], callback_retry_s="1,1")
    job = await _pending_job(store, receiver.url, attempts=1, lease_left_s=-1)
    held = await _pending_job(store, receiver.url, attempts=0, lease_left_s=60)
    # Two replicas' senders, started after the restart, read the same due job at once …
    first, second = CallbackSender(store, settings), CallbackSender(store, settings)
    async with store.sessions() as db:
        [due] = [d for d in await queue.due_jobs(db, utcnow(), 100) if d.job_id == job.id]
    # … and both try it: one claim wins, the attempt is sent once.
    sent = await asyncio.gather(first.deliver(due), second.deliver(due))
    assert sorted(sent) == [False, True] and len(receiver.hits) == 1, "sent twice"
    await first.run_once()  # nothing more is due: the other job's claim still holds
    assert len(receiver.hits) == 1
    secret = await _secret(store, job.account_id)
    assert verify_callback_signature(
        secret, receiver.hits[0].body, receiver.hits[0].headers["X-Computalot-Signature"]
    )
    assert json.loads(receiver.hits[0].body)["id"] == job.id
    stored, events = await _stored(store, job.id)
    assert (stored.callback_state, stored.callback_attempts) == ("delivered", 2)
    assert [(e.event, e.data["attempt"], e.data["delivered"]) for e in events] == [
        ("callback", 2, True)
    ]
    # A claim still held by the dead process is left alone until its lease runs out.
    still, none = await _stored(store, held.id)
    assert (still.callback_state, still.callback_attempts, none) == ("pending", 0, [])


async def test_the_sender_refuses_a_loopback_name_under_the_strict_policy(
    store: Store, receivers: Any
) -> None:
    receiver = receivers(200, host="127.0.0.1")
    job = await _pending_job(
        store, f"http://localhost:{receiver.port}/", attempts=0, lease_left_s=-1
    )
    await CallbackSender(store, load_settings()).run_once()
    stored, events = await _stored(store, job.id)
    assert (stored.callback_state, stored.callback_attempts) == ("failed", 1)
    assert "refused" in events[0].data["error"] and receiver.hits == []


async def test_claims_are_compare_and_set(store: Store) -> None:
    job = await _pending_job(store, "http://127.0.0.2:9/", attempts=0, lease_left_s=-1)
    due = queue.Due(job.id, 0)
    async with store.sessions() as db:
        assert await queue.claim(db, due, utcnow())
        await db.commit()
    async with store.sessions() as db:
        assert not await queue.claim(db, due, utcnow())  # the claim's lease holds it
        later = utcnow() + timedelta(seconds=queue.LEASE_S + 1)
        assert not await queue.claim(db, queue.Due(job.id, 1), later)  # a stale read
        assert await queue.claim(db, due, later)  # the lease ran out: taken over
        await db.commit()


async def _secret(store: Store, account_id: str) -> str:
    from computalot.store.models import Account

    async with store.sessions() as db:
        account = await db.get(Account, account_id)
        assert account is not None
        return account.callback_secret
