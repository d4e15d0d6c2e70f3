"""Task artifacts without the head in the data path, artifact inputs, revisions restored from
the artifact store (docs/llms-full.md, "Artifacts of a task", "Artifact inputs").

Real parts: the session platform (local Ray, the dispatcher actor, HTTP), its local artifact
store, and for S3 a moto server over HTTP, written to by ``run_task`` on a Ray worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from computalot.engine.names import DISPATCHER_NAME
from tests.support.helpers import (
    assert_envelope,
    make_tarball,
    submit_job,
    wait_for,
    wait_job,
)

MiB = 1024 * 1024
API = "/api/v1"

RUNNER = r"""
import hashlib, json, os, sys

payload = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
out = os.environ["COMPUTALOT_ARTIFACT_DIR"]
result = {}
mode = payload.get("mode")
if mode == "big":  # written 1 MiB at a time: the runner never holds the file
    h = hashlib.sha256()
    with open(os.path.join(out, "big.bin"), "wb") as fh:
        for _ in range(payload["mib"]):
            chunk = os.urandom(1024 * 1024)
            h.update(chunk)
            fh.write(chunk)
    result["sha256"] = h.hexdigest()
elif mode == "write":
    os.makedirs(os.path.join(out, "sub"), exist_ok=True)
    with open(os.path.join(out, "sub", payload["name"]), "wb") as fh:
        fh.write(payload["text"].encode())
    result["sha256"] = hashlib.sha256(payload["text"].encode()).hexdigest()
elif mode == "wait":  # until the test drops a gate file
    import time
    while not os.path.exists(payload["gate"]):
        time.sleep(0.1)
elif mode == "read":
    found = {}
    for path in payload["paths"]:
        if os.path.isfile(path):
            found[path] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    result["found"] = found
json.dump(result, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))
"""


@pytest.fixture(scope="module")
def client(new_account: Callable[..., httpx.Client]) -> httpx.Client:
    return new_account()


@pytest.fixture(scope="module")
def project(client: httpx.Client, make_project: Callable[..., str]) -> str:
    return make_project(client, {"runner.py": RUNNER})


def only_task(client: httpx.Client, job_id: str) -> dict[str, Any]:
    (task,) = client.get(f"{API}/jobs/{job_id}/tasks").json()["tasks"]
    return dict(task)


def run_ok(client: httpx.Client, project: str, **fields: Any) -> dict[str, Any]:
    job_id = submit_job(client, project, **fields)
    job = wait_job(client, job_id)
    task = only_task(client, job_id)
    assert job["status"] == "completed", task
    return task


def result_of(client: httpx.Client, job_id: str) -> dict[str, Any]:
    answer = client.get(f"{API}/results/{job_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["results"][0]["result"])


def db_rows(query: str, *args: Any) -> list[tuple[Any, ...]]:
    path = Path(os.environ["COMPUTALOT_DATA_DIR"]).resolve() / "computalot.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return list(conn.execute(query, args).fetchall())


def download_sha256(client: httpx.Client, artifact_id: str) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with client.stream("GET", f"{API}/artifacts/{artifact_id}") as answer:
        assert answer.status_code == 200, answer.read()
        for chunk in answer.iter_bytes():
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def dispatcher_rss_mib(platform: Any) -> float:
    def rss(_self: Any) -> float:
        import gc

        gc.collect()
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    actor = ray.get_actor(DISPATCHER_NAME, namespace=platform.settings.ray_namespace)
    return float(ray.get(actor.__ray_call__.remote(rss), timeout=60))


def test_a_300_mib_artifact_goes_to_the_store_without_the_dispatcher(
    platform: Any, client: httpx.Client, project: str
) -> None:
    run_ok(client, project, payload={"mode": "write", "name": "warm.txt", "text": "warm"})
    before = dispatcher_rss_mib(platform)
    job_id = submit_job(client, project, payload={"mode": "big", "mib": 300}, timeout_s=300)
    assert wait_job(client, job_id, timeout_s=300)["status"] == "completed"
    after = dispatcher_rss_mib(platform)
    print(f"dispatcher RSS {before:.1f} MiB before, {after:.1f} MiB after a 300 MiB artifact")
    assert abs(after - before) < 50, (before, after)
    (art_id,) = only_task(client, job_id)["artifacts"]
    expected = result_of(client, job_id)["sha256"]
    ((sha, size, key, name),) = db_rows(
        "SELECT sha256, size, storage_key, filename FROM artifacts WHERE id = ?", art_id
    )
    assert (sha, size, name) == (expected, 300 * MiB, "big.bin")
    assert download_sha256(client, art_id) == (expected, 300 * MiB)
    ((refs,),) = db_rows("SELECT refs FROM blobs WHERE sha256 = ? AND storage_key = ?", sha, key)
    assert refs == 1


def test_same_bytes_twice_are_stored_once(client: httpx.Client, project: str) -> None:
    text = f"same bytes {uuid.uuid4().hex}"
    first = run_ok(client, project, payload={"mode": "write", "name": "a.txt", "text": text})
    second = run_ok(client, project, payload={"mode": "write", "name": "b.txt", "text": text})
    ids = first["artifacts"] + second["artifacts"]
    rows = db_rows(
        "SELECT filename, storage_key, sha256 FROM artifacts WHERE id IN (?, ?) ORDER BY filename",
        *ids,
    )
    assert [r[0] for r in rows] == ["sub/a.txt", "sub/b.txt"]
    assert rows[0][1] == rows[1][1]  # one key: the second copy was dropped
    ((refs,),) = db_rows("SELECT refs FROM blobs WHERE sha256 = ?", rows[0][2])
    assert refs == 2
    store_root = Path(os.environ["COMPUTALOT_DATA_DIR"]).resolve() / "artifacts" / "blobs"
    sha = rows[0][2]

    def copies() -> list[Path]:
        return list((store_root / sha[:2]).glob(f"{sha}.*"))

    wait_for(lambda: len(copies()) == 1, "the duplicate copy to be dropped", timeout_s=30)


def download(art_id: str, path: str) -> dict[str, Any]:
    return {"_artifacts": {"download": [{"id": art_id, "path": path}]}}


def test_payload_downloads_are_placed_before_the_runner_starts(
    client: httpx.Client, project: str
) -> None:
    text = f"input {uuid.uuid4().hex}"
    made = run_ok(client, project, payload={"mode": "write", "name": "in.txt", "text": text})
    (art_id,) = made["artifacts"]
    want = hashlib.sha256(text.encode()).hexdigest()
    payload = {"mode": "read", "paths": ["inputs/deep/data.txt", "runner.py"]}
    job_id = submit_job(
        client, project, payload={**payload, **download(art_id, "inputs/deep/data.txt")}
    )
    assert wait_job(client, job_id)["status"] == "completed"
    found = result_of(client, job_id)["found"]
    assert found["inputs/deep/data.txt"] == want
    assert "runner.py" in found  # the revision is still there beside it
    # Each element of a fan-out gets its own.
    other = run_ok(client, project, payload={"mode": "write", "name": "o.txt", "text": "other"})
    items = [download(art_id, "x.txt"), download(other["artifacts"][0], "x.txt")]
    fan = submit_job(
        client,
        project,
        payload={"mode": "read", "paths": ["x.txt"]},
        fan_out={"items": items},
    )
    assert wait_job(client, fan)["status"] == "completed"
    results = client.get(f"{API}/results/{fan}").json()["results"]
    shas = [r["result"]["found"]["x.txt"] for r in results]
    assert shas == [want, hashlib.sha256(b"other").hexdigest()]


def test_an_uploaded_artifact_is_an_input_and_a_deleted_one_fails_the_task(
    client: httpx.Client, project: str, task_tmp: Path
) -> None:
    data = os.urandom(3 * MiB)
    uploaded = client.post(
        f"{API}/artifacts", content=data, headers={"X-Artifact-Filename": "in.bin"}
    )
    assert uploaded.status_code == 201, uploaded.text
    art_id = uploaded.json()["id"]
    payload = {"mode": "read", "paths": ["in.bin"], **download(art_id, "in.bin")}
    job_id = submit_job(client, project, payload=payload)
    assert wait_job(client, job_id)["status"] == "completed"
    assert result_of(client, job_id)["found"] == {"in.bin": hashlib.sha256(data).hexdigest()}
    # Checked at submit, deleted before the task starts: the attempt fails, naming it.
    gate = task_tmp / "gate"
    blocker = submit_job(client, project, payload={"mode": "wait", "gate": str(gate)})
    waiting = submit_job(client, project, payload=payload, depends_on=[blocker])
    assert client.delete(f"{API}/artifacts/{art_id}").status_code == 200
    gate.touch()
    assert wait_job(client, blocker)["status"] == "completed"
    assert wait_job(client, waiting)["status"] == "failed"
    error = only_task(client, waiting)["error"]
    assert error["code"] == "input_unavailable" and art_id in error["message"], error
    assert "_artifacts.download" in error["recommended_action"]


async def test_one_query_checks_every_id_of_a_big_fan_out(store: Any) -> None:
    from sqlalchemy import event

    from computalot.artifacts.inputs import check_submit_inputs
    from computalot.errors import ValidationFailed
    from computalot.store.models import Artifact
    from computalot.timeutil import utcnow

    async with store.sessions() as db:
        for i in range(3):
            for owner in ("acct_mine", "acct_other"):
                db.add(
                    Artifact(
                        id=f"art_{owner[5:]}{i}",
                        account_id=owner,
                        filename="f",
                        size=1,
                        sha256="0" * 64,
                        content_type="application/octet-stream",
                        state="available",
                        storage_key=f"blobs/{owner}{i}",
                        created_at=utcnow(),
                    )
                )
        await db.commit()
    items = [download(f"art_mine{i % 3}", "in") for i in range(100_000)]
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(store.engine.sync_engine, "before_cursor_execute", count)
    try:
        async with store.sessions() as db:
            await check_submit_inputs(db, "acct_mine", {}, {"items": items}, "items", None)
            assert len(statements) == 1, statements
            items[77_777] = download("art_other1", "in")
            with pytest.raises(ValidationFailed) as exc:
                await check_submit_inputs(db, "acct_mine", {}, {"items": items}, "items", None)
            assert exc.value.details[0]["loc"] == [
                "fan_out",
                "items",
                77_777,
                "_artifacts",
                "download",
                0,
                "id",
            ]
            assert len(statements) == 2
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", count)


def job_count(client: httpx.Client) -> int:
    answer = client.get(f"{API}/jobs", params={"limit": 200})
    assert answer.status_code == 200, answer.text
    return len(answer.json()["jobs"])


def test_a_foreign_or_unknown_artifact_is_422_and_creates_nothing(
    client: httpx.Client,
    project: str,
    new_account: Callable[..., httpx.Client],
    make_project: Callable[..., str],
) -> None:
    stranger = new_account()
    theirs = make_project(stranger, {"runner.py": RUNNER})
    made = submit_job(stranger, theirs, payload={"mode": "write", "name": "s", "text": "theirs"})
    assert wait_job(stranger, made)["status"] == "completed"
    (foreign,) = only_task(stranger, made)["artifacts"]
    jobs_before = job_count(client)
    n_jobs = db_rows("SELECT count(*) FROM jobs")[0][0]
    cases = [
        ({"payload": download(foreign, "a")}, ["payload", "_artifacts", "download", 0, "id"]),
        (
            {"payload": download("art_" + "x" * 22, "a")},
            ["payload", "_artifacts", "download", 0, "id"],
        ),
        (
            {"fan_out": {"items": [{"n": 1}, {"n": 2, **download(foreign, "a")}]}},
            ["fan_out", "items", 1, "_artifacts", "download", 0, "id"],
        ),
        ({"payload": download(foreign, "../a")}, ["payload", "_artifacts", "download", 0, "path"]),
    ]
    for fields, loc in cases:
        body = {"project": project, "runner_command": ["python3", "runner.py"], **fields}
        key = f"idem-{uuid.uuid4().hex}"
        answer = client.post(f"{API}/jobs", json=body, headers={"Idempotency-Key": key})
        err = assert_envelope(answer, 422, "validation_error")
        assert err["details"][0]["loc"] == loc, err
        assert db_rows("SELECT count(*) FROM idempotency_keys WHERE key = ?", key) == [(0,)]
    assert job_count(client) == jobs_before
    assert db_rows("SELECT count(*) FROM jobs")[0][0] == n_jobs
    # The owner's own id is fine.
    assert submit_job(
        stranger, theirs, payload={"mode": "read", "paths": ["a"], **download(foreign, "a")}
    )


def test_manifest_data_sources_are_checked_and_placed(
    client: httpx.Client, project: str, make_project: Callable[..., str]
) -> None:
    made = run_ok(client, project, payload={"mode": "write", "name": "w.bin", "text": "weights"})
    (art_id,) = made["artifacts"]

    def manifest(artifact: str) -> str:
        return (
            '{"version": 1, "entrypoint": {"command": ["python3", "runner.py"]}, '
            f'"data_sources": [{{"name": "weights", "artifact": "{artifact}", '
            '"mount": "data/weights.bin"}]}'
        )

    good = make_project(client, {"runner.py": RUNNER, "computalot.project.json": manifest(art_id)})
    job_id = submit_job(client, good, payload={"mode": "read", "paths": ["data/weights.bin"]})
    assert wait_job(client, job_id)["status"] == "completed"
    found = result_of(client, job_id)["found"]
    assert found == {"data/weights.bin": hashlib.sha256(b"weights").hexdigest()}

    missing = "art_" + "z" * 22
    bad = f"p-{uuid.uuid4().hex[:10]}"
    assert client.post(f"{API}/projects", json={"name": bad}).status_code == 201
    files = {"runner.py": RUNNER, "computalot.project.json": manifest(missing)}
    pushed = client.post(f"{API}/projects/{bad}/push", content=make_tarball(files))
    assert pushed.status_code == 200, pushed.text
    assert any(missing in w and "data_sources.0.artifact" in w for w in pushed.json()["warnings"])
    answer = client.post(f"{API}/jobs", json={"project": bad})
    err = assert_envelope(answer, 422, "validation_error")
    assert err["details"][0]["loc"] == ["manifest", "data_sources", 0, "artifact"]


def test_a_revision_whose_directory_and_package_are_gone_is_restored_from_the_store(
    platform: Any, client: httpx.Client, make_project: Callable[..., str]
) -> None:
    marker = uuid.uuid4().hex
    name = make_project(client, {"runner.py": RUNNER, "requirements.txt": "", "marker.txt": marker})
    rows = db_rows(
        "SELECT r.path, r.content_hash, r.tarball_key FROM revisions r "
        "JOIN projects p ON p.active_revision_id = r.id WHERE p.name = ?",
        name,
    )
    ((path, content_hash, tarball_key),) = rows
    assert tarball_key
    shutil.rmtree(path)
    from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_exists

    from computalot.artifacts.store import store_config
    from computalot.engine.packages import Source, ensure_uploaded, package_uri

    _internal_kv_del(package_uri(content_hash))  # Ray dropped the package meanwhile
    job_id = submit_job(client, name, payload={"mode": "read", "paths": ["marker.txt"]})
    job = wait_job(client, job_id)
    assert job["status"] == "completed", only_task(client, job_id)
    found = result_of(client, job_id)["found"]
    assert found == {"marker.txt": hashlib.sha256(marker.encode()).hexdigest()}
    assert Path(path, "marker.txt").read_text() == marker
    # Gone again while the dispatcher knows the revision: packaging restores it the same way.
    shutil.rmtree(path)
    _internal_kv_del(package_uri(content_hash))
    source = Source(path, 0, tarball_key, store_config(platform.settings))
    uri = asyncio.run(ensure_uploaded(content_hash, path, 0, source))
    assert uri == package_uri(content_hash) and _internal_kv_exists(uri)
    assert Path(path, "marker.txt").read_text() == marker


# ---- S3: a Ray worker streams a task's artifacts and inputs itself --------------------------


def test_run_task_on_a_worker_writes_artifacts_and_reads_inputs_from_s3(
    platform: Any, moto_server: Any, tmp_path: Path
) -> None:
    from computalot.artifacts.store import StoreConfig
    from computalot.engine.attempt import AttemptSpec
    from computalot.engine.packages import upload_revision
    from computalot.engine.run_task import run_task
    from tests.support.s3 import CREDENTIALS

    moto = moto_server
    bucket = moto.make_bucket(f"task-{uuid.uuid4().hex[:8]}")
    store = StoreConfig("s3", bucket=bucket, prefix="arts", endpoint_url=moto.endpoint_url)
    s3 = moto.client()
    s3.put_object(Bucket=bucket, Key="arts/blobs/input-1", Body=b"from s3")
    tree = tmp_path / "rev"
    tree.mkdir()
    (tree / "runner.py").write_text(
        RUNNER
        + "\nopen(os.path.join(out, 'copy.txt'), 'wb').write(open('in/x.txt', 'rb').read())\n"
    )
    uri = upload_revision(uuid.uuid4().hex, str(tree))
    spec = AttemptSpec(
        job_id="job_s3",
        account_id="acct_s3",
        task_id=f"tsk_{uuid.uuid4().hex[:12]}",
        index=0,
        attempt=1,
        payload={"mode": "write", "name": "made.txt", "text": "made on a worker"},
        runner_command=["python3", "runner.py"],
        timeout_s=60,
        namespace=platform.settings.ray_namespace,
        store=store,
        downloads=(("art_in", "blobs/input-1", "in/x.txt"),),
    )
    remote = run_task.options(runtime_env={"working_dir": uri, "env_vars": CREDENTIALS})
    outcome, _text = ray.get(remote.remote(spec), timeout=120)
    assert outcome.status == "ok", outcome
    stored = {a["path"]: a for a in outcome.artifacts}
    assert set(stored) == {"sub/made.txt", "copy.txt"}
    for path, data in (("sub/made.txt", b"made on a worker"), ("copy.txt", b"from s3")):
        item = stored[path]
        assert set(item) == {"path", "size", "sha256", "key"}
        assert item["sha256"] == hashlib.sha256(data).hexdigest() and item["size"] == len(data)
        body = s3.get_object(Bucket=bucket, Key=f"arts/{item['key']}")["Body"].read()
        assert body == data
    assert sorted(moto.keys(bucket, "arts/blobs/")) == sorted(
        ["arts/blobs/input-1", *(f"arts/{a['key']}" for a in outcome.artifacts)]
    )


async def test_settling_writes_artifact_rows_counted_once_per_sha256(store: Any) -> None:
    """The dispatcher's settle on both backends: each stored file gets its row and one blobs
    reference; a second copy of known bytes and the files of a stale attempt are discarded."""
    from sqlalchemy import select

    from computalot.engine import claiming, settling
    from computalot.engine import rows as engine_rows
    from computalot.engine.attempt import Outcome
    from computalot.engine.outcomes import judge_outcome
    from computalot.engine.result_file import prepare_result
    from computalot.store.models import Artifact, Blob
    from tests.support.store_rows import items_job

    job = await items_job(store, 3, owner="arts", spec={"merge_strategy": "collect"})
    cache = engine_rows.JobCache()
    async with store.sessions() as db:
        runnable = {j.id: j for j in await claiming.runnable_jobs(db)}
        launches, _events = await claiming.claim_tasks(
            db, {job.id: 3}, "epoch-arts", cache, {job.id: runnable[job.id].status}
        )
        await db.commit()
    sha = hashlib.sha256(f"bytes {uuid.uuid4().hex}".encode()).hexdigest()

    def outcome(key: str) -> Outcome:
        result = prepare_result(b"{}", batched=False, element_count=1, max_bytes=1 << 20)
        files = [{"path": "out/a.bin", "size": 5, "sha256": sha, "key": key}]
        return Outcome(status="ok", exit_code=0, artifacts=files, **result)

    ended = [
        (task, attempt, outcome(f"blobs/k{i}")) for i, (_j, task, attempt) in enumerate(launches)
    ]
    ended[2] = (ended[2][0], ended[2][1] + 1, ended[2][2])  # an attempt that is no longer current
    discarded: list[str] = []
    async with store.sessions() as db:
        found = await engine_rows.load_task_rows(db, [t.id for t, _a, _o in ended])
        jobs = await cache.load(db, [job.id])
        judged = [
            settling.Judged(jobs[job.id], found[t.id], a, judge_outcome(o), o) for t, a, o in ended
        ]
        await settling.apply_verdicts(db, judged, lost_budget=1, discard=discarded.extend)
        await db.commit()
    assert sorted(discarded) == ["blobs/k1", "blobs/k2"]
    async with store.sessions() as db:
        arts = (await db.execute(select(Artifact).where(Artifact.job_id == job.id))).scalars()
        rows = sorted((a.task_id, a.storage_key, a.filename, a.state) for a in arts)
        blob = await db.get(Blob, sha)
    first, second = launches[0][1].id, launches[1][1].id
    assert rows == sorted(
        [
            (first, "blobs/k0", "out/a.bin", "available"),
            (second, "blobs/k0", "out/a.bin", "available"),
        ]
    )
    assert blob is not None and blob.refs == 2 and blob.storage_key == "blobs/k0"
