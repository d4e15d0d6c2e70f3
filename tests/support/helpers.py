"""Helpers shared by the integration tests."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx


def make_tarball(files: dict[str, str | bytes], modes: dict[str, int] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = (modes or {}).get(name, 0o644)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def wait_job(client: httpx.Client, job_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """Follow the job's SSE stream until ``end``; return the terminal job object."""
    with client.stream(
        "GET", f"/api/v1/jobs/{job_id}/stream", timeout=httpx.Timeout(timeout_s, read=timeout_s)
    ) as answer:
        assert answer.status_code == 200, answer.read()
        event = None
        for line in answer.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "end":
                return dict(json.loads(line.split(":", 1)[1]))
    raise AssertionError(f"stream for {job_id} closed without an end event")


ENVELOPE_KEYS = {"code", "message", "details", "recommended_action"}


def assert_envelope(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The answer is the error envelope (docs/llms-full.md, "Errors") with this status and code; its ``error``."""
    assert answer.status_code == status, answer.text
    assert "Traceback" not in answer.text
    err = answer.json()["error"]
    assert set(err) >= ENVELOPE_KEYS, err
    assert err["code"] == code, err
    return dict(err)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def host_pids(marker: str) -> list[int]:
    """This host's pids of the live processes whose command line holds ``marker`` (a runner in a
    sandbox knows only its own pid namespace's numbers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline and pid_alive(int(entry.name)):
                found.append(int(entry.name))
    return sorted(found)


def parent_pid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise ValueError(f"no PPid for {pid}")


def events_of(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    """Every stored event of a job, through GET /jobs/:id/events paging."""
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        page = client.get(f"/api/v1/jobs/{job_id}/events", params={"after": after, "limit": 1000})
        assert page.status_code == 200, page.text
        batch = page.json()["events"]
        if not batch:
            return events
        events += batch
        after = batch[-1]["id"]


def submit_job(client: httpx.Client, project: str, **fields: Any) -> str:
    """POST a ``python3 runner.py`` job of ``project`` (``fields`` added or overriding); its id."""
    body = {"project": project, "runner_command": ["python3", "runner.py"], "timeout_s": 60}
    answer = client.post("/api/v1/jobs", json={**body, **fields})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def wait_for(condition: Callable[[], Any], what: str, timeout_s: float = 60.0) -> Any:
    """Poll ``condition`` every 0.1 s until it is truthy; return its value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


COMPUTALOT = str(Path(sys.executable).with_name("computalot"))


def admin_cli(data_dir: Path, *args: str, database_url: str | None = None) -> dict[str, Any]:
    """``computalot admin … --json`` in its own process against this data dir (and database,
    when given); its JSON answer."""
    env = dict(os.environ)
    if database_url:
        env["COMPUTALOT_DATABASE_URL"] = database_url
    done = subprocess.run(
        [COMPUTALOT, "admin", *args, "--json", "--data-dir", str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))
