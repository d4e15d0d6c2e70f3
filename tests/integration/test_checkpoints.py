"""Checkpointing through real HTTP, real Ray and real sandboxed runners.

A runner writes its progress to ``$COMPUTALOT_CHECKPOINT_DIR`` and fails (or is killed at its
timeout); the retry finds the directory restored and goes on from there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.helpers import assert_envelope, wait_job
from tests.support.helpers import wait_for as poll

API = "/api/v1"

RUNNER = r"""
import json, os, sys, time

p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
attempt = int(os.environ["COMPUTALOT_ATTEMPT"])
ckpt = os.environ.get("COMPUTALOT_CHECKPOINT_DIR")
mode = p["mode"]


def finish(result):
    with open(os.environ["COMPUTALOT_TASK_RESULT"], "w") as fh:
        json.dump(result, fh)
    sys.exit(0)


if mode == "env":
    finish({"checkpoint_dir": ckpt, "has_token": bool(os.environ.get("COMPUTALOT_TASK_TOKEN"))})
state_path = os.path.join(ckpt, "state.json")
found = os.listdir(ckpt)
state = json.load(open(state_path)) if os.path.exists(state_path) else {"done": 0}
if attempt == 1:
    os.makedirs(os.path.join(ckpt, "shards"), exist_ok=True)
    with open(os.path.join(ckpt, "shards", "a.bin"), "wb") as fh:
        fh.write(os.urandom(4096))
    with open(state_path, "w") as fh:
        json.dump({"done": 5, "by_attempt": 1}, fh)
    if mode == "crash":
        print("crashing after step 5", flush=True)
        sys.exit(1)
    if mode == "hang":
        time.sleep(600)  # killed at timeout_s: the directory is saved after the kill
total = state["done"]
for step in range(state["done"], 10):
    total += 1
with open(state_path, "w") as fh:
    json.dump({"done": 10, "by_attempt": attempt}, fh)
finish({"attempt": attempt, "started_from": state["done"], "found": sorted(found),
        "restored_by": state.get("by_attempt"), "total": total})
"""


@pytest.fixture(scope="module")
def member(new_account: Any) -> httpx.Client:
    return new_account("member")


@pytest.fixture(scope="module")
def project(member: httpx.Client, make_project: Any) -> str:
    return str(make_project(member, {"runner.py": RUNNER}))


def run_job(client: httpx.Client, project: str, **fields: Any) -> tuple[dict[str, Any], Any]:
    body = {"project": project, "runner_command": ["python3", "runner.py"], "timeout_s": 60}
    answer = client.post(f"{API}/jobs", json={**body, **fields})
    assert answer.status_code == 201, answer.text
    done = wait_job(client, answer.json()["id"], timeout_s=240)
    results = client.get(f"{API}/results/{done['id']}").json()["results"]
    return done, results[0]


def only_task(client: httpx.Client, job_id: str) -> dict[str, Any]:
    tasks = client.get(f"{API}/jobs/{job_id}/tasks").json()["tasks"]
    assert len(tasks) == 1
    return dict(tasks[0])


ON = {"enabled": True, "resume_from_latest": True}


def blob_files(platform: Any) -> set[Path]:
    """Every stored blob of the platform's (local) artifact store."""
    root = Path(platform.settings.data_dir) / "artifacts" / "blobs"
    return {p for p in root.rglob("*") if p.is_file()}


def test_a_crashed_attempt_resumes_from_its_checkpoint(
    member: httpx.Client, project: str, platform: Any
) -> None:
    before = blob_files(platform)
    done, result = run_job(
        member, project, payload={"mode": "crash"}, max_retries=1, checkpointing=ON
    )
    assert done["status"] == "completed", done
    got = result["result"]
    assert got["attempt"] == 2
    assert got["started_from"] == 5 and got["restored_by"] == 1  # attempt 1's progress
    assert got["found"] == ["shards", "state.json"]
    assert got["total"] == 10
    task = only_task(member, done["id"])
    ckpt = task["checkpoint"]
    assert set(ckpt) == {"size", "attempt", "saved_at"}  # never the blob key
    assert ckpt["attempt"] == 2 and ckpt["size"] > 0 and ckpt["saved_at"].endswith("Z")
    assert result["result_warnings"] == []
    # two attempts saved a checkpoint each; the first one's blob went when the second replaced it
    poll(lambda: len(blob_files(platform) - before) == 1, "the replaced checkpoint deleted", 30)


def test_a_timed_out_attempt_is_saved_too(member: httpx.Client, project: str) -> None:
    done, result = run_job(
        member,
        project,
        payload={"mode": "hang"},
        max_retries=1,
        timeout_s=8,
        checkpointing={"enabled": True},
    )
    assert done["status"] == "completed", done
    assert result["result"]["started_from"] == 5 and result["result"]["attempt"] == 2
    events = member.get(f"{API}/jobs/{done['id']}/events", params={"limit": 500}).json()
    retries = [e for e in events["events"] if e["event"] == "retry"]
    assert retries and retries[0]["data"]["error"]["code"] == "timeout"


def test_resume_from_latest_false_starts_empty(member: httpx.Client, project: str) -> None:
    done, result = run_job(
        member,
        project,
        payload={"mode": "crash"},
        max_retries=1,
        checkpointing={"enabled": True, "resume_from_latest": False},
    )
    assert done["status"] == "completed", done
    got = result["result"]
    assert got["attempt"] == 2 and got["started_from"] == 0 and got["found"] == []
    assert only_task(member, done["id"])["checkpoint"]["attempt"] == 2  # still saved


def test_without_checkpointing_there_is_no_directory(member: httpx.Client, project: str) -> None:
    done, result = run_job(member, project, payload={"mode": "env"})
    assert done["status"] == "completed", done
    assert result["result"] == {"checkpoint_dir": None, "has_token": True}
    assert only_task(member, done["id"])["checkpoint"] is None
    done, result = run_job(member, project, payload={"mode": "env"}, checkpointing=ON)
    assert result["result"]["checkpoint_dir"]
    assert "computalot-attempts" not in json.dumps(result)  # no host path in the answer
    assert only_task(member, done["id"])["checkpoint"] is None  # an empty directory saves none


def test_checkpointing_on_a_recipe_job_is_422(member: httpx.Client) -> None:
    body = {
        "recipe": "packing",
        "payload": {"operation": "eval", "candidate": [0.0] * 45},
        "checkpointing": ON,
    }
    recipe_body = {k: v for k, v in body.items() if k != "recipe"}
    via_recipe_route = member.post(f"{API}/recipes/packing/jobs", json=recipe_body)
    err = assert_envelope(via_recipe_route, 422, "validation_error")
    assert err["details"][0]["loc"] == ["checkpointing"]
    err = assert_envelope(member.post(f"{API}/jobs", json=body), 422, "validation_error")
    assert err["details"][0]["loc"] == ["checkpointing"]
    jobs = member.get(f"{API}/jobs", params={"limit": 50}).json()["jobs"]
    assert all(j.get("recipe") != "packing" for j in jobs)  # nothing was created


def test_a_checkpoint_round_trips_through_s3(moto_server: Any, tmp_path: Path) -> None:
    """Across nodes the store is S3: a checkpoint saved by one attempt is read back by another
    (a real S3-compatible server), and deleting it is what a replacement does."""
    import uuid

    from computalot.artifacts.store import StoreConfig
    from computalot.engine.checkpoints import restore_checkpoint, save_checkpoint

    bucket = moto_server.make_bucket(f"ckpt-{uuid.uuid4().hex[:8]}")
    store = StoreConfig("s3", bucket=bucket, prefix="arts", endpoint_url=moto_server.endpoint_url)
    source = tmp_path / "one" / "checkpoint"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "state.json").write_text('{"step": 42}')
    saved, warnings = save_checkpoint(source, store)
    assert warnings == [] and saved is not None
    target = tmp_path / "two" / "checkpoint"
    target.mkdir(parents=True)
    assert restore_checkpoint(target, saved["key"], store) == []
    assert (target / "sub" / "state.json").read_text() == '{"step": 42}'
    store.open().delete(saved["key"])
    again = tmp_path / "three" / "checkpoint"
    again.mkdir(parents=True)
    assert "started empty" in restore_checkpoint(again, saved["key"], store)[0]
