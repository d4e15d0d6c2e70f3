"""Server-Sent Events over real HTTP (docs/llms-full.md, "Streaming"): liveness, ordering, resume, multi-job watch.

The runner prints a progress line and some output, then blocks until the test creates a file;
the test creates it only after the stream delivered both events, so passing proves the events
arrive while the task is still running, not replayed at the end.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.helpers import events_of, wait_job

API = "/api/v1"

RUNNER = r"""
import json, os, sys, time

p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
print("COMPUTALOT_PROGRESS:" + json.dumps({"step": 1, "of": 2}), flush=True)
print("live-output-" + p["tag"], flush=True)
gate = p.get("gate")
if gate:
    deadline = time.time() + 120
    while not os.path.exists(gate):
        if time.time() > deadline:
            sys.exit("gate never opened")
        time.sleep(0.05)
print("COMPUTALOT_PROGRESS:" + json.dumps({"step": 2, "of": 2}), flush=True)
with open(os.environ["COMPUTALOT_TASK_RESULT"], "w") as fh:
    json.dump({"tag": p["tag"]}, fh)
"""

STREAM_TIMEOUT = httpx.Timeout(120.0, read=120.0)


@pytest.fixture(scope="module")
def project(admin: httpx.Client, make_project: Any) -> str:
    return str(make_project(admin, {"runner.py": RUNNER}))


def submit(client: httpx.Client, project: str, payload: dict[str, Any]) -> dict[str, Any]:
    body = {
        "project": project,
        "runner_command": ["python3", "runner.py"],
        "payload": payload,
        "timeout_s": 120,
    }
    answer = client.post(f"{API}/jobs", json=body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def sse(answer: httpx.Response) -> Iterator[dict[str, Any]]:
    """Parse an SSE response into ``{"id", "event", "data"}`` dicts (comments skipped)."""
    frame: dict[str, Any] = {}
    data: list[str] = []
    for line in answer.iter_lines():
        if line == "":
            if data or frame:
                frame["data"] = json.loads("\n".join(data)) if data else None
                yield frame
            frame, data = {}, []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name == "id":
                frame["id"] = int(value)
            else:
                frame[name] = value


def assert_increasing(frames: list[dict[str, Any]]) -> None:
    ids = [f["id"] for f in frames if "id" in f]
    assert ids, frames
    assert all(a < b for a, b in itertools.pairwise(ids)), ids


def test_stream_delivers_progress_and_output_live(
    admin: httpx.Client, project: str, task_tmp: Path
) -> None:
    gate = task_tmp / "gate"
    job = submit(admin, project, {"tag": "live", "gate": str(gate)})
    frames: list[dict[str, Any]] = []
    seen_progress = seen_output = False
    with admin.stream("GET", f"{API}/jobs/{job['id']}/stream", timeout=STREAM_TIMEOUT) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        for frame in sse(answer):
            frames.append(frame)
            data = frame["data"]
            if frame["event"] == "progress" and data["progress"] == {"step": 1, "of": 2}:
                assert data["task_id"]
                seen_progress = True
            if frame["event"] == "output" and "live-output-live" in data["text"]:
                assert data["stream"] == "stdout"
                seen_output = True
            if seen_progress and seen_output and not gate.exists():
                # The runner is blocked on this file: the events above arrived while it ran.
                status = admin.get(f"{API}/jobs/{job['id']}").json()
                assert status["status"] == "running", status
                gate.touch()
    assert gate.exists(), "progress and output never arrived while the task ran"
    assert frames[-1]["event"] == "end", [f["event"] for f in frames]
    assert frames[-1]["data"]["status"] == "completed"
    assert_increasing(frames)
    names = [f["event"] for f in frames]
    assert names.count("end") == 1
    assert "task" in names and "result" in names and "job" in names
    after_gate = [f["data"] for f in frames if f["event"] == "progress"]
    assert after_gate[-1]["progress"] == {"step": 2, "of": 2}
    # The last progress line (printed right before exit) precedes the task's completion: live
    # events are stored before the attempt's outcome reaches the dispatcher, which writes the
    # status events.
    last_live = max(i for i, f in enumerate(frames) if f["event"] in ("progress", "output"))
    done = next(
        i
        for i, f in enumerate(frames)
        if f["event"] == "task" and f["data"]["status"] == "completed"
    )
    assert last_live < done < names.index("result"), names
    # Progress lines are not output text.
    output_text = "".join(f["data"]["text"] for f in frames if f["event"] == "output")
    assert "COMPUTALOT_PROGRESS" not in output_text
    (task,) = admin.get(f"{API}/jobs/{job['id']}/tasks").json()["tasks"]
    assert task["latest_progress"] == {"step": 2, "of": 2}


def test_stream_matches_stored_events_and_resumes_after_last_event_id(
    admin: httpx.Client, project: str
) -> None:
    job = submit(admin, project, {"tag": "resume"})
    wait_job(admin, job["id"])
    stored = events_of(admin, job["id"])
    assert stored[-1]["event"] == "end"
    assert len(stored) >= 5, stored

    def as_frame(e: dict[str, Any]) -> dict[str, Any]:
        return {"id": e["id"], "event": e["event"], "data": {"job_id": e["job_id"], **e["data"]}}

    with admin.stream("GET", f"{API}/jobs/{job['id']}/stream", timeout=STREAM_TIMEOUT) as answer:
        full = list(sse(answer))
    assert full == [as_frame(e) for e in stored], "a finished job's stream replays its events"

    for n in (stored[0]["id"], stored[len(stored) // 2]["id"], stored[-2]["id"]):
        headers = {"Last-Event-ID": str(n)}
        with admin.stream(
            "GET", f"{API}/jobs/{job['id']}/stream", headers=headers, timeout=STREAM_TIMEOUT
        ) as answer:
            assert answer.status_code == 200
            resumed = list(sse(answer))
        assert resumed == [as_frame(e) for e in stored if e["id"] > n], n

    page = admin.get(f"{API}/jobs/{job['id']}/events", params={"after": stored[1]["id"]})
    assert [e["id"] for e in page.json()["events"]] == [e["id"] for e in stored[2:]]


def test_resume_after_end_closes_the_stream(admin: httpx.Client, project: str) -> None:
    """A client that already got ``end`` and reconnects must not hang on a finished job."""
    job = submit(admin, project, {"tag": "after-end"})
    wait_job(admin, job["id"])
    last = events_of(admin, job["id"])[-1]
    assert last["event"] == "end"
    headers = {"Last-Event-ID": str(last["id"])}
    timeout = httpx.Timeout(30.0, read=20.0)
    started = time.monotonic()
    with admin.stream(
        "GET", f"{API}/jobs/{job['id']}/stream", headers=headers, timeout=timeout
    ) as answer:
        assert answer.status_code == 200
        frames = list(sse(answer))
    assert time.monotonic() - started < 20
    assert all(f.get("id", 0) <= last["id"] for f in frames), frames


def test_watch_ends_after_every_job_ended(
    admin: httpx.Client, project: str, task_tmp: Path
) -> None:
    gate = task_tmp / "gate-b"
    a = submit(admin, project, {"tag": "a"})
    b = submit(admin, project, {"tag": "b", "gate": str(gate)})
    frames: list[dict[str, Any]] = []
    ends: list[str] = []
    with admin.stream(
        "GET", f"{API}/jobs/watch", params={"ids": f"{a['id']},{b['id']}"}, timeout=STREAM_TIMEOUT
    ) as answer:
        assert answer.status_code == 200
        for frame in sse(answer):
            frames.append(frame)
            if frame["event"] == "end":
                ends.append(frame["data"]["id"])
                if frame["data"]["id"] == a["id"]:
                    gate.touch()  # B only finishes after A's end went out
    assert ends == [a["id"], b["id"]]
    assert frames[-1]["event"] == "end"
    assert {f["data"]["job_id"] for f in frames if "id" in f} == {a["id"], b["id"]}
    assert_increasing(frames)
    snapshot_ids = {f["data"]["id"] for f in frames if "id" not in f and f["event"] == "job"}
    assert snapshot_ids <= {a["id"], b["id"]}


def test_two_streams_on_one_job_see_the_same_events(admin: httpx.Client, project: str) -> None:
    job = submit(admin, project, {"tag": "twice"})
    got: dict[int, list[dict[str, Any]]] = {}

    def follow(slot: int) -> None:
        with admin.stream(
            "GET", f"{API}/jobs/{job['id']}/stream", timeout=STREAM_TIMEOUT
        ) as answer:
            got[slot] = [f for f in sse(answer) if "id" in f]

    threads = [threading.Thread(target=follow, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert got[0] == got[1]
    assert got[0][-1]["event"] == "end"


def test_stream_argument_errors(admin: httpx.Client, project: str) -> None:
    job = submit(admin, project, {"tag": "args"})
    bad_header = admin.get(
        f"{API}/jobs/{job['id']}/stream", headers={"Last-Event-ID": "not-a-number"}
    )
    assert bad_header.status_code == 422, bad_header.text
    assert bad_header.json()["error"]["details"][0]["loc"] == ["Last-Event-ID"]
    too_many = ",".join([job["id"]] + [f"job_x{i}" for i in range(100)])
    answer = admin.get(f"{API}/jobs/watch", params={"ids": too_many})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["details"][0]["loc"] == ["ids"]
    empty = admin.get(f"{API}/jobs/watch", params={"ids": " , "})
    assert empty.status_code == 422, empty.text
    unknown = admin.get(f"{API}/jobs/watch", params={"ids": f"{job['id']},job_nope"})
    assert unknown.status_code == 404, unknown.text
    wait_job(admin, job["id"])
