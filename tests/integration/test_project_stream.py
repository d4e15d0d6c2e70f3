"""``GET /projects/:name/stream`` through real HTTP and real Ray (docs/llms-full.md, "Projects"):
push, init, node, status and kv events in order, resumed with ``Last-Event-ID`` after a dropped
connection without loss or repeat, and another account's project is 404."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import httpx

from tests.support.helpers import assert_envelope, make_tarball

API = "/api/v1"
RUNNER = r"""
import json, os
json.dump({"ok": True}, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))
"""
#: What one push and one init of a one-node cluster write, in order.
PUSH_THEN_INIT = ["push", "status", "init", "node", "status", "node", "status", "init"]

Event = dict[str, Any]


class Reader:
    """Reads one SSE stream on a thread until ``until(events)`` holds, then drops it."""

    def __init__(
        self,
        base_url: str,
        token: str,
        name: str,
        until: Callable[[list[Event]], bool],
        headers: dict[str, str] | None = None,
    ) -> None:
        self.events: list[Event] = []
        self.opened = threading.Event()
        self.status: int | None = None
        self.error: BaseException | None = None
        self._args = (base_url, token, name, until, headers or {})
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        assert self.opened.wait(60), "the stream did not open"

    def _read(self) -> None:
        base_url, token, name, until, headers = self._args
        auth = {"Authorization": f"Bearer {token}", **headers}
        try:
            with (
                httpx.Client(base_url=base_url, headers=auth) as client,
                client.stream(
                    "GET",
                    f"{API}/projects/{name}/stream",
                    timeout=httpx.Timeout(120, read=120),
                ) as answer,
            ):
                self.status = answer.status_code
                assert answer.headers["content-type"].startswith("text/event-stream")
                self.opened.set()
                event: Event = {}
                for line in answer.iter_lines():
                    if line.startswith(":"):
                        continue
                    if not line:
                        if event:
                            self.events.append(event)
                            event = {}
                            if until(self.events):
                                return
                        continue
                    key, _, value = line.partition(":")
                    value = value.strip()
                    if key == "id":
                        event["id"] = int(value)
                    elif key == "event":
                        event["event"] = value
                    elif key == "data":
                        event["data"] = json.loads(value)
        except BaseException as exc:
            self.error = exc
            self.opened.set()

    def join(self, timeout_s: float = 180) -> list[Event]:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), f"stream still waiting; got {self.names()}"
        assert self.error is None, self.error
        return self.events

    def names(self) -> list[str]:
        return [e["event"] for e in self.events if "id" in e]


def numbered(events: list[Event]) -> list[Event]:
    return [e for e in events if "id" in e]


def ends_with_init_finished(count: int) -> Callable[[list[Event]], bool]:
    """True once ``count`` ``init`` finished events arrived."""

    def done(events: list[Event]) -> bool:
        finished = [
            e for e in events if e.get("event") == "init" and e["data"].get("phase") == "finished"
        ]
        return len(finished) >= count

    return done


def test_stream_carries_push_init_node_status_and_resumes_without_loss(
    new_account: Callable[..., httpx.Client], make_project: Any, base_url: str
) -> None:
    client = new_account()
    name = make_project(client, {"runner.py": RUNNER})
    token = client.token  # type: ignore[attr-defined]

    reader = Reader(base_url, token, name, ends_with_init_finished(1))
    pushed = client.post(
        f"{API}/projects/{name}/push", content=make_tarball({"runner.py": RUNNER + "\n# v2\n"})
    )
    assert pushed.status_code == 200, pushed.text
    assert client.post(f"{API}/projects/{name}/init", json={}).status_code == 202
    events = reader.join()
    assert events[0]["event"] == "status" and "id" not in events[0], "a snapshot first"
    assert events[0]["data"]["state"] == "published"
    got = numbered(events)
    assert [e["event"] for e in got] == PUSH_THEN_INIT, got
    ids = [e["id"] for e in got]
    assert ids == sorted(set(ids)), "ids increase, none repeats"
    push = got[0]["data"]
    assert push["revision_id"] == pushed.json()["revision"]["id"]
    assert push["content_hash"] == pushed.json()["revision"]["content_hash"]
    assert push["tarball_diff"] == {"added": 0, "removed": 0, "modified": 1, "unchanged": 0}
    nodes = [e["data"] for e in got if e["event"] == "node"]
    assert [(n["node"], n["state"]) for n in nodes] == [
        ("node-1", "initializing"),
        ("node-1", "ready"),
    ]
    assert got[-2]["data"]["state"] == "ready" and got[-2]["data"]["ready_for_jobs"] is True
    last_seen = ids[-1]

    # While nobody listens: invalidate, push again, init again.
    assert client.post(f"{API}/projects/{name}/invalidate").status_code == 200
    wrote = client.put(f"{API}/projects/{name}/kv/best", json={"loss": 0.25})
    assert wrote.status_code in (200, 201), wrote.text
    again = client.post(
        f"{API}/projects/{name}/push", content=make_tarball({"runner.py": RUNNER + "\n# v3\n"})
    )
    assert again.status_code == 200, again.text
    assert client.post(f"{API}/projects/{name}/init", json={}).status_code == 202

    resumed = Reader(
        base_url,
        token,
        name,
        ends_with_init_finished(1),
        headers={"Last-Event-ID": str(last_seen)},
    ).join()
    assert all("id" in e for e in resumed), "a resumed stream sends no snapshot"
    assert [e["event"] for e in resumed] == ["status", "kv", *PUSH_THEN_INIT], resumed
    assert resumed[0]["data"]["state"] == "published", "the invalidate's status"
    assert resumed[1]["data"]["key"] == "best"
    assert resumed[0]["id"] > last_seen

    # Replayed from before the first push, the store holds exactly what the two streams saw.
    replay = Reader(
        base_url,
        token,
        name,
        lambda evs: bool(evs) and evs[-1]["id"] >= resumed[-1]["id"],
        headers={"Last-Event-ID": str(got[0]["id"] - 1)},
    ).join()
    assert [e["id"] for e in replay] == ids + [e["id"] for e in resumed]


def test_stream_of_another_accounts_project_is_404_and_a_bad_cursor_is_422(
    new_account: Callable[..., httpx.Client], make_project: Any
) -> None:
    owner, stranger = new_account(), new_account()
    name = make_project(owner, {"runner.py": RUNNER})
    assert_envelope(stranger.get(f"{API}/projects/{name}/stream"), 404, "not_found")
    assert_envelope(stranger.get(f"{API}/projects/nope/stream"), 404, "not_found")
    bad = owner.get(f"{API}/projects/{name}/stream", headers={"Last-Event-ID": "soon"})
    err = assert_envelope(bad, 422, "validation_error")
    assert err["details"][0]["loc"] == ["Last-Event-ID"]


def test_thirty_watchers_of_one_project_all_get_its_events(
    new_account: Callable[..., httpx.Client], make_project: Any, base_url: str
) -> None:
    client = new_account()
    name = make_project(client, {"runner.py": RUNNER})
    token = client.token  # type: ignore[attr-defined]

    def got_push(events: list[Event]) -> bool:
        return any(e.get("event") == "push" for e in events)

    readers = [Reader(base_url, token, name, got_push) for _ in range(30)]
    pushed = client.post(
        f"{API}/projects/{name}/push", content=make_tarball({"runner.py": RUNNER + "\n# v2\n"})
    )
    assert pushed.status_code == 200, pushed.text
    assert client.get(f"{API}/projects/{name}/status").status_code == 200, "the API still answers"
    revision = pushed.json()["revision"]["id"]
    for reader in readers:
        pushes = [e for e in reader.join(60) if e.get("event") == "push"]
        assert [p["data"]["revision_id"] for p in pushes] == [revision]
