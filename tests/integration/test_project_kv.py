"""Project KV through real HTTP, and from inside running tasks with their task token (``flt_``).

The concurrency test runs 8 real sandboxed tasks of one job that each increment one counter
with a read-modify-write loop guarded by ``If-Match``: the final value must be exactly 8 and
every version 1..8 must have been written by exactly one task (no lost update).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from computalot.projects import kv
from computalot.projects.events import project_events_after
from computalot.projects.service import create_project
from computalot.store.db import Store
from computalot.store.models import Project, ProjectKV
from tests.support.helpers import assert_envelope, wait_job

API = "/api/v1"

RUNNER = r"""
import json, os, random, time, urllib.error, urllib.request

p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
api = os.environ["COMPUTALOT_API_URL"] + "/api/v1"
token = os.environ["COMPUTALOT_TASK_TOKEN"]
index = os.environ["COMPUTALOT_TASK_INDEX"]


def call(method, path, body=None, headers=None, raw=None):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(api + path, data=data, method=method, headers={
        "Authorization": "Bearer " + token, "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


with open(os.path.join(p["dir"], "token-%s" % index), "w") as fh:
    fh.write(token)
key = "/projects/%s/kv/%s" % (p["project"], p["key"])
conflicts, wrote = 0, None
while wrote is None:
    status, current = call("GET", key)
    if status == 404:
        version, value = 0, 0
    elif status == 200:
        version, value = current["version"], current["value"]
    else:
        raise SystemExit("GET answered %s %s" % (status, current))
    status, answer = call("PUT", key, value + 1, {"If-Match": str(version)})
    if status == 200:
        wrote = answer
    elif status == 409:
        conflicts += 1
        time.sleep(random.random() * 0.05)
    else:
        raise SystemExit("PUT answered %s %s" % (status, answer))
other, _ = call("GET", "/projects/%s/kv/%s" % (p["other"], p["key"]))
jobs, _ = call("GET", "/jobs")
uploaded, art = call("POST", "/artifacts", raw=b"made by task " + index.encode(),
                     headers={"X-Artifact-Filename": "t%s.txt" % index,
                              "Content-Type": "text/plain"})
with open(os.environ["COMPUTALOT_TASK_RESULT"], "w") as fh:
    json.dump({"value": wrote["value"], "version": wrote["version"], "conflicts": conflicts,
               "other_project": other, "jobs": jobs, "upload": uploaded,
               "artifact": (art or {}).get("id")}, fh)
"""


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _with_db(platform: Any, work: Any) -> Any:
    store = Store(platform.settings.resolved_database_url)
    try:
        async with store.sessions() as db:
            return await work(db)
    finally:
        await store.close()


def project_id(platform: Any, account_id: str, name: str) -> str:
    async def work(db: Any) -> str:
        query = select(Project.id).where(Project.account_id == account_id, Project.name == name)
        return str((await db.execute(query)).scalar_one())

    return str(run(_with_db(platform, work)))


def kv_events(platform: Any, pid: str) -> list[dict[str, Any]]:
    async def work(db: Any) -> list[dict[str, Any]]:
        rows = await project_events_after(db, pid, 0, limit=1000)
        return [dict(data) for _id, event, data in rows if event == "kv"]

    return list(run(_with_db(platform, work)))


@pytest.fixture
def member(new_account: Any) -> httpx.Client:
    return new_account("member")


@pytest.fixture
def project(member: httpx.Client, make_project: Any) -> str:
    return str(make_project(member, {"runner.py": RUNNER}))


def url(project: str, key: str) -> str:
    return f"{API}/projects/{project}/kv/{key}"


def test_crud_versions_and_events(member: httpx.Client, project: str, platform: Any) -> None:
    first = member.put(url(project, "cfg/model"), json={"lr": 0.1, "layers": [1, 2]})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["key"] == "cfg/model" and body["value"] == {"lr": 0.1, "layers": [1, 2]}
    assert body["version"] == 1 and body["updated_at"].endswith("Z")
    assert first.headers["etag"] == '"1"'
    second = member.put(url(project, "cfg/model"), json="now a string")
    assert second.status_code == 200 and second.json()["version"] == 2
    got = member.get(url(project, "cfg/model"))
    assert got.status_code == 200
    assert got.json()["value"] == "now a string" and got.json()["version"] == 2
    for value in (None, 0, [], {"nested": {"deep": [True, None]}}):
        sent = member.put(url(project, "types"), content=json.dumps(value).encode())
        assert sent.json()["value"] == value  # (httpx's json=None would send no body)
        assert member.get(url(project, "types")).json()["value"] == value

    gone = member.delete(url(project, "cfg/model"))
    assert gone.status_code == 200 and gone.json() == {
        "key": "cfg/model",
        "version": 2,
        "deleted": True,
    }
    assert_envelope(member.get(url(project, "cfg/model")), 404, "not_found")
    assert_envelope(member.delete(url(project, "cfg/model")), 404, "not_found")
    recreated = member.put(url(project, "cfg/model"), json=1)
    assert recreated.json()["version"] == 1  # a deleted key starts over

    events = kv_events(platform, project_id(platform, member.account["id"], project))
    model_events = [e for e in events if e["key"] == "cfg/model"]
    assert model_events == [
        {"key": "cfg/model", "version": 1},
        {"key": "cfg/model", "version": 2},
        {"key": "cfg/model", "version": 2, "deleted": True},
        {"key": "cfg/model", "version": 1},
    ]
    assert all("value" not in e for e in events)


def test_deleting_a_project_deletes_its_keys(member: httpx.Client, make_project: Any) -> None:
    name = make_project(member, {"runner.py": RUNNER})
    assert member.put(url(name, "left/behind"), json=1).status_code == 200
    assert member.delete(f"{API}/projects/{name}").status_code == 200
    assert_envelope(member.get(url(name, "left/behind")), 404, "not_found")
    assert member.post(f"{API}/projects", json={"name": name}).status_code == 201
    assert_envelope(member.get(url(name, "left/behind")), 404, "not_found")
    assert member.get(f"{API}/projects/{name}/kv").json()["keys"] == []


def test_if_match_compare_and_set(member: httpx.Client, project: str, platform: Any) -> None:
    k = url(project, "counter")
    assert member.put(k, json=1, headers={"If-Match": "0"}).json()["version"] == 1
    again = assert_envelope(member.put(k, json=99, headers={"If-Match": "0"}), 409, "conflict")
    assert again["details"][0]["current_version"] == 1
    assert member.put(k, json=2, headers={"If-Match": "1"}).json()["version"] == 2
    stale = assert_envelope(member.put(k, json=99, headers={"If-Match": "1"}), 409, "conflict")
    assert stale["details"][0]["loc"] == ["header", "If-Match"]
    assert stale["details"][0]["current_version"] == 2 and "2" in stale["details"][0]["msg"]
    assert member.put(k, json=3, headers={"If-Match": '"2"'}).json()["version"] == 3
    assert member.put(k, json=4, headers={"If-Match": "*"}).json()["version"] == 4
    missing = url(project, "never-written")
    assert_envelope(member.put(missing, json=1, headers={"If-Match": "*"}), 409, "conflict")
    assert_envelope(member.put(missing, json=1, headers={"If-Match": "3"}), 409, "conflict")
    assert_envelope(member.get(missing), 404, "not_found")
    bad = assert_envelope(
        member.put(k, json=1, headers={"If-Match": "soon"}), 422, "validation_error"
    )
    assert bad["details"][0]["loc"] == ["header", "If-Match"]
    assert_envelope(member.delete(k, headers={"If-Match": "3"}), 409, "conflict")
    # nothing the refused writes carried was stored, and they wrote no event
    now = member.get(k).json()
    assert (now["value"], now["version"]) == (4, 4)
    events = kv_events(platform, project_id(platform, member.account["id"], project))
    assert [e["version"] for e in events if e["key"] == "counter"] == [1, 2, 3, 4]
    assert member.delete(k, headers={"If-Match": "4"}).status_code == 200


def test_value_over_one_mib_is_413_and_not_stored(member: httpx.Client, project: str) -> None:
    k = url(project, "big")
    assert member.put(k, json="small").status_code == 200
    big = json.dumps("x" * (1024 * 1024)).encode()
    answer = member.put(k, content=big, headers={"Content-Type": "application/json"})
    err = assert_envelope(answer, 413, "payload_too_large")
    assert err["details"][0]["loc"] == ["body"]

    def chunks() -> Any:  # no Content-Length: refused while it streams
        yield b'"'
        for _ in range(40):
            yield b"y" * 65536
        yield b'"'

    streamed = member.put(k, content=chunks(), headers={"Content-Type": "application/json"})
    assert_envelope(streamed, 413, "payload_too_large")
    assert member.get(k).json()["value"] == "small"
    assert member.get(k).json()["version"] == 1


def test_bad_keys_and_bodies(member: httpx.Client, project: str) -> None:
    assert_envelope(member.put(url(project, "k" * 513), json=1), 422, "validation_error")
    tab = assert_envelope(member.put(url(project, "a%09b"), json=1), 422, "validation_error")
    assert tab["details"][0]["loc"] == ["path", "key"]
    assert member.put(url(project, "k" * 512), json=1).status_code == 200
    not_json = member.put(url(project, "x"), content=b"{nope", headers={"Content-Type": "a/b"})
    assert_envelope(not_json, 400, "bad_request")
    assert_envelope(member.put(url(project, "x"), content=b""), 400, "bad_request")
    assert_envelope(member.put(url(project, "x"), content=b"NaN"), 400, "bad_request")
    assert_envelope(member.get(url("no-such-project", "x")), 404, "not_found")


def test_other_account_is_404_and_viewer_reads_but_cannot_write(
    member: httpx.Client, project: str, new_account: Any, platform: Any
) -> None:
    assert member.put(url(project, "mine"), json=1).status_code == 200
    stranger = new_account("member")
    assert_envelope(stranger.get(url(project, "mine")), 404, "not_found")
    assert_envelope(stranger.put(url(project, "mine"), json=2), 404, "not_found")
    assert_envelope(stranger.get(f"{API}/projects/{project}/kv"), 404, "not_found")
    assert member.get(url(project, "mine")).json()["value"] == 1

    viewer = new_account("viewer")
    name = f"v-{uuid.uuid4().hex[:8]}"

    async def seed(db: Any) -> None:  # a viewer cannot create projects: the store can
        made = await create_project(
            db, viewer.account["id"], name=name, remote_dir=None, description=None
        )
        await db.flush()
        await kv.put_value(db, made, viewer.account["id"], "seen", {"ok": True}, None)
        await db.commit()

    run(_with_db(platform, seed))
    assert viewer.get(url(name, "seen")).json()["value"] == {"ok": True}
    assert viewer.get(f"{API}/projects/{name}/kv").json()["keys"][0]["key"] == "seen"
    err = assert_envelope(viewer.put(url(name, "seen"), json=2), 403, "forbidden")
    assert "viewer" in err["message"]
    assert_envelope(viewer.delete(url(name, "seen")), 403, "forbidden")
    assert viewer.get(url(name, "seen")).json()["version"] == 1


def test_prefix_listing_and_paging(member: httpx.Client, project: str) -> None:
    names = [f"run/{i:02d}" for i in range(7)] + ["runner", "other/1", "RUN/upper"]
    for n in names:
        assert member.put(url(project, n), json={"n": n}).status_code == 200
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"prefix": "run/", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = member.get(f"{API}/projects/{project}/kv", params=params)
        assert page.status_code == 200, page.text
        seen += page.json()["keys"]
        cursor = page.json()["next_cursor"]
        pages += 1
        if cursor is None:
            break
    assert [e["key"] for e in seen] == [f"run/{i:02d}" for i in range(7)]
    assert pages == 3
    assert all(set(e) == {"key", "version", "size", "updated_at"} for e in seen)
    assert seen[0]["size"] == len(json.dumps({"n": "run/00"}, separators=(",", ":")))
    with_values = member.get(
        f"{API}/projects/{project}/kv", params={"prefix": "run", "values": "true"}
    ).json()
    assert [e["key"] for e in with_values["keys"]] == [*names[:7], "runner"]
    assert with_values["keys"][-1]["value"] == {"n": "runner"}
    everything = member.get(f"{API}/projects/{project}/kv").json()["keys"]
    assert len(everything) == len(names)
    bad = member.get(f"{API}/projects/{project}/kv", params={"cursor": "%%%"})
    assert_envelope(bad, 400, "bad_request")


def test_eight_tasks_increment_one_counter_without_a_lost_update(
    member: httpx.Client, project: str, make_project: Any, platform: Any, task_tmp: Path
) -> None:
    other = make_project(member, {"runner.py": RUNNER})
    assert member.put(url(other, "counter"), json=1000).status_code == 200
    job = member.post(
        f"{API}/jobs",
        json={
            "project": project,
            "runner_command": ["python3", "runner.py"],
            "payload": {"project": project, "other": other, "key": "counter", "dir": str(task_tmp)},
            "fan_out": {"items": [{"i": i} for i in range(8)]},
            "timeout_s": 120,
        },
    )
    assert job.status_code == 201, job.text
    done = wait_job(member, job.json()["id"], timeout_s=240)
    assert done["status"] == "completed", done
    results = member.get(f"{API}/results/{done['id']}").json()["results"]
    written = sorted((r["result"]["version"], r["result"]["value"]) for r in results)
    assert written == [(v, v) for v in range(1, 9)]  # each increment landed exactly once
    final = member.get(url(project, "counter")).json()
    assert (final["value"], final["version"]) == (8, 8)
    assert member.get(url(other, "counter")).json()["value"] == 1000
    pid = project_id(platform, member.account["id"], project)
    assert [e["version"] for e in kv_events(platform, pid) if e["key"] == "counter"] == list(
        range(1, 9)
    )
    for r in results:
        res = r["result"]
        assert res["other_project"] == 404, res  # the token reaches its own project only
        assert res["jobs"] == 401, res  # and no other route
        assert res["upload"] == 201, res  # but it may upload artifacts, as the job's account
        meta = member.get(f"{API}/artifacts/{res['artifact']}/meta")
        assert meta.status_code == 200 and meta.json()["size"] == len(b"made by task 0")

    tokens = sorted(task_tmp.glob("token-*"))
    assert len(tokens) == 8
    token = tokens[0].read_text()
    assert token.startswith("flt_")
    anon = httpx.Client(base_url=str(platform.url), timeout=30)
    ended = anon.get(url(project, "counter"), headers={"Authorization": f"Bearer {token}"})
    err = assert_envelope(ended, 401, "unauthorized")
    assert "no longer running" in err["message"]
    assert_envelope(
        anon.get(f"{API}/jobs", headers={"Authorization": f"Bearer {token}"}), 401, "unauthorized"
    )
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    forged = anon.get(url(project, "counter"), headers={"Authorization": f"Bearer {tampered}"})
    assert_envelope(forged, 401, "unauthorized")
    for task in member.get(f"{API}/jobs/{done['id']}/tasks").json()["tasks"]:
        assert token not in json.dumps(task)
    anon.close()


def test_concurrent_creates_with_if_match_zero_have_one_winner(
    member: httpx.Client, project: str, platform: Any
) -> None:
    """Many writers racing to create one key through the API: the primary key decides."""
    import concurrent.futures

    k = url(project, f"race-{uuid.uuid4().hex[:6]}")

    def create(i: int) -> int:
        return member.put(k, json=i, headers={"If-Match": "0"}).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(create, range(16)))
    assert sorted(codes) == [200] + [409] * 15

    async def rows(db: Any) -> int:
        query = select(ProjectKV.version).where(ProjectKV.key == k.rsplit("/", 1)[1])
        return len((await db.execute(query)).all())

    assert run(_with_db(platform, rows)) == 1


def test_sdk_kv_methods(member: httpx.Client, project: str, platform: Any) -> None:
    from computalot import ComputalotClient
    from computalot.sdk.errors import Conflict

    with ComputalotClient(controller_url=str(platform.url), token=member.token) as sdk:
        assert sdk.kv_put(project, "sdk/a b", None)["version"] == 1
        assert sdk.kv_get(project, "sdk/a b")["value"] is None
        assert sdk.kv_put(project, "sdk/a b", {"x": 1}, if_match=1)["version"] == 2
        with pytest.raises(Conflict):
            sdk.kv_put(project, "sdk/a b", {"x": 2}, if_match=1)
        listed = sdk.kv_list(project, prefix="sdk/", values=True)
        assert [(k["key"], k["value"]) for k in listed["keys"]] == [("sdk/a b", {"x": 1})]
        assert sdk.kv_delete(project, "sdk/a b", if_match=2)["deleted"] is True
