"""The SDK against the real server, sync and async (issue #20): a project from push (with its
``.gitignore``) to results, KV, artifacts with a resumed multipart upload, an x402 top-up paid
by an eth-account key, typed errors, and streams that resume after the connection is dropped
between client and server (a proxy cuts it mid-stream)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account

from computalot import AsyncComputalotClient, ComputalotClient
from computalot.sdk.errors import Conflict, NotFound, PaymentRequired, ValidationError
from tests.support.drop_proxy import DropProxy

RUNNER = """
import json, os, time
p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
for i in range(p.get("lines", 0)):
    print(f"line {i}", flush=True)
    time.sleep(p.get("pause", 0))
files = sorted(os.listdir("."))
json.dump({"files": files, "n": p.get("n")}, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))
"""


def _project_dir(root: Path) -> Path:
    files = {
        "runner.py": RUNNER,
        "keep.txt": "kept",
        ".gitignore": "secret.txt\nbuild/\n",
        "secret.txt": "not for the cluster",
        "build/out.bin": "built",
        "scratch.tmp": "scratch",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _token(member: httpx.Client) -> str:
    return str(member.headers["Authorization"].split()[1])


def _job(project: str, **payload: Any) -> dict[str, Any]:
    return {
        "project": project,
        "runner_command": ["python3", "runner.py"],
        "payload": payload,
        "timeout_s": 120,
    }


def test_the_sync_client_runs_a_project_from_push_to_results(
    platform: Any, new_account: Callable[..., httpx.Client], tmp_path: Path
) -> None:
    member = new_account()
    name = f"sdk-{uuid.uuid4().hex[:8]}"
    with ComputalotClient(controller_url=str(platform.url), token=_token(member)) as client:
        assert client.account()["role"] == "member"
        client.create_project(name, description="sdk test")
        with pytest.raises(Conflict):
            client.create_project(name)
        pushed = client.push_project(name, _project_dir(tmp_path / "proj"), exclude=["*.tmp"])
        assert pushed["revision"]["id"].startswith("rev_")
        assert client.get_project(name)["name"] == name
        assert "can_accept_new_jobs" in client.project_status(name)

        key = str(uuid.uuid4())
        job = client.submit_job(_job(name, n=7), idempotency_key=key)
        again = client.submit_job(_job(name, n=7), idempotency_key=key)
        assert again["id"] == job["id"]  # the same key is the same job
        final = client.wait(job["id"], timeout=180)
        assert final["status"] == "completed", final
        (row,) = client.get_results(job["id"])["results"]
        files = row["result"]["files"]
        assert "runner.py" in files and "keep.txt" in files and ".gitignore" in files
        assert not {"secret.txt", "build", "scratch.tmp"} & set(files)
        assert [r["result"]["n"] for r in client.iter_results(job["id"])] == [7]
        events = list(client.stream(job["id"]))  # a finished job: its stored events, then end
        assert events[-1]["event"] == "end" and events[-1]["data"]["status"] == "completed"

        client.kv_put(name, "best/score", {"v": 1})
        entry = client.kv_get(name, "best/score")
        assert entry["value"] == {"v": 1} and entry["version"] == 1
        with pytest.raises(Conflict):
            client.kv_put(name, "best/score", {"v": 2}, if_match=0)
        client.kv_put(name, "best/score", {"v": 2}, if_match=1)
        listed = client.kv_list(name, prefix="best/")["keys"]
        assert [k["key"] for k in listed] == ["best/score"]
        client.kv_delete(name, "best/score", if_match="*")
        with pytest.raises(NotFound):
            client.kv_get(name, "best/score")

        with pytest.raises(NotFound):
            client.get_job("job_" + "x" * 20)
        with pytest.raises(ValidationError):
            client.submit_job(project=name, runner_command=[], timeout_s=-1)
        assert client.send_feedback("bug", "sdk test", "filed by the SDK test")


def test_artifacts_stream_both_ways_and_a_multipart_upload_resumes(
    platform: Any, new_account: Callable[..., httpx.Client], tmp_path: Path
) -> None:
    member = new_account()
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(11 * 1024 * 1024))  # three 5 MiB parts, the last one short
    digest = hashlib.sha256(blob.read_bytes()).hexdigest()
    with ComputalotClient(controller_url=str(platform.url), token=_token(member)) as client:
        sent: list[int] = []
        one = client.upload_artifact(blob, progress=sent.append)
        assert one["sha256"] == digest and sum(sent) == blob.stat().st_size
        got: list[int] = []
        back = client.download_artifact(one["id"], tmp_path / "back.bin", progress=got.append)
        assert back["sha256"] == digest and sum(got) == back["size"]

        # A run that died after part 1: the resume sends parts 2 and 3 only.
        started = client.start_multipart_upload("blob.bin", blob.stat().st_size, sha256=digest,
                                                part_size=5 * 1024 * 1024)  # fmt: skip
        upload_id = started["upload_id"]
        client.upload_part(upload_id, 1, blob.read_bytes()[: 5 * 1024 * 1024])
        moved: list[int] = []
        done = client.upload_artifact_resumable(blob, upload_id=upload_id, progress=moved.append)
        assert done["sha256"] == digest and done["size"] == blob.stat().st_size
        assert moved[0] == 5 * 1024 * 1024 and sum(moved) == blob.stat().st_size
        fresh = client.upload_artifact_resumable(blob, part_size=5 * 1024 * 1024)
        assert fresh["sha256"] == digest
        ids = {a["id"] for a in client.list_artifacts(limit=50)["artifacts"]}
        assert {one["id"], done["id"], fresh["id"]} <= ids
        client.delete_artifact(one["id"])
        with pytest.raises(NotFound):
            client.artifact_meta(one["id"])


def test_topup_pays_a_quote_over_x402_and_a_shortfall_carries_its_quote(
    platform: Any, new_account: Callable[..., httpx.Client], make_project: Any
) -> None:
    member = new_account(credit_usd=None)
    project = make_project(member, {"runner.py": RUNNER})
    with ComputalotClient(controller_url=str(platform.url), token=_token(member)) as client:
        with pytest.raises(PaymentRequired) as short:
            client.submit_job(_job(project))
        assert short.value.quote and short.value.quote["id"].startswith("quote_")
        payer = Account.create()
        receipt = client.topup(3.25, account=payer)
        assert receipt["quote"]["status"] == "paid"
        assert receipt["quote"]["payer"] == payer.address.lower()
        assert receipt["ledger_entry"]["amount_usd"] == 3.25
        receipt = client.topup(1.5, account=Account.create().key.hex())  # a key as hex text
        assert client.balance()["available_usd"] == pytest.approx(4.75)
        kinds = [e["kind"] for e in client.list_ledger(limit=10)["entries"]]
        assert kinds.count("credit") == 2


def test_a_job_stream_resumes_after_the_connection_is_dropped(
    platform: Any, new_account: Callable[..., httpx.Client], make_project: Any
) -> None:
    member = new_account()
    project = make_project(member, {"runner.py": RUNNER})
    proxy = DropProxy(str(platform.url), after_events=3, drops=1)
    try:
        with ComputalotClient(controller_url=proxy.url, token=_token(member)) as client:
            client.stream_retry_delay = 0.1
            job = client.submit_job(_job(project, lines=8, pause=0.4))
            events = list(client.stream(job["id"]))
            stored = client.get_events(job["id"], limit=200)
    finally:
        proxy.close()
    assert proxy.cut == 1, "the proxy never cut the stream: the test proved nothing"
    streams = [h for h in proxy.heads if "/stream" in h.split("\r\n", 1)[0]]
    assert len(streams) >= 2
    resumed = [h for h in streams[1:] if "last-event-id:" in h.lower()]
    assert resumed, streams
    numbered = [e["id"] for e in events if e["id"] is not None]
    assert numbered == sorted(set(numbered)), "an event was repeated or out of order"
    assert set(numbered) == {e["id"] for e in stored["events"]}, "an event was lost"
    assert events[-1]["event"] == "end" and events[-1]["data"]["status"] == "completed"
    outputs = "".join(e["data"].get("text", "") for e in events if e["event"] == "output")
    assert all(f"line {i}" in outputs for i in range(8))


async def test_the_async_client_runs_jobs_watches_them_through_a_drop_and_tops_up(
    platform: Any, new_account: Callable[..., httpx.Client], tmp_path: Path
) -> None:
    member = new_account()
    name = f"sdk-async-{uuid.uuid4().hex[:8]}"
    proxy = DropProxy(str(platform.url), after_events=3, drops=1)
    client = AsyncComputalotClient(controller_url=proxy.url, token=_token(member))
    client.stream_retry_delay = 0.1
    try:
        async with client:
            await client.create_project(name)
            await client.push_project(name, _project_dir(tmp_path / "proj"))
            jobs = [await client.submit_job(_job(name, n=n, lines=4, pause=0.4)) for n in (1, 2)]
            ids = [j["id"] for j in jobs]
            events = [e async for e in client.watch(ids)]
            ends = {e["data"].get("job_id") or e["data"].get("id") for e in events
                    if e["event"] == "end"}  # fmt: skip
            assert ends == set(ids)
            finals = [await client.wait(i, timeout=60) for i in ids]
            assert [f["status"] for f in finals] == ["completed", "completed"]
            results = [r async for r in client.iter_results(ids[1])]
            assert results[0]["result"]["n"] == 2
            await client.kv_put(name, "k", [1, 2])
            assert (await client.kv_get(name, "k"))["value"] == [1, 2]
            path = tmp_path / "a.bin"
            path.write_bytes(b"async bytes" * 1000)
            art = await client.upload_artifact(path)
            back = await client.download_artifact(art["id"], tmp_path / "b.bin")
            assert (tmp_path / "b.bin").read_bytes() == path.read_bytes() == path.read_bytes()
            assert back["sha256"] == art["sha256"]
            receipt = await client.topup(2.0, account=Account.create())
            assert receipt["quote"]["status"] == "paid"
            with pytest.raises(NotFound):
                await client.get_project("no-such-project-here")
    finally:
        proxy.close()
    assert proxy.cut == 1
    watches = [h for h in proxy.heads if "/jobs/watch" in h.split("\r\n", 1)[0]]
    assert len(watches) >= 2 and "last-event-id:" in watches[1].lower()
    numbered = [e["id"] for e in events if e["id"] is not None]
    assert numbered == sorted(set(numbered))
