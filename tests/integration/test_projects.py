"""Projects over real HTTP: the seed's curl Quickstart, tenancy, hostile tarballs, revisions.

The Quickstart runs the seed reference's own curl lines in a real shell (only the host and the
project name are swapped). Hostile tarballs are built byte by byte here and pushed through the
real route; afterwards the test checks the filesystem, not only the answers.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.helpers import make_tarball, wait_job

API = "/api/v1"
SEED_HOST = "https://dev.computalot.com"
SEED_PROJECT = "my-proj"

# Verbatim from shared/seed/llm-agent-reference-compact.txt, "Project Quickstart".
QUICKSTART_CREATE = """\
curl -sS -X POST -H "Authorization: Bearer $TOKEN" \\
-H "Content-Type: application/json" \\
https://dev.computalot.com/api/v1/projects \\
-d '{"name": "my-proj", "remote_dir": "/root/projects/my-proj"}'
"""
QUICKSTART_PUSH = """\
tar czf code.tar.gz Dockerfile computalot.project.json script.py
curl -sS -X POST -H "Authorization: Bearer $TOKEN" \\
--data-binary @code.tar.gz \\
https://dev.computalot.com/api/v1/projects/my-proj/push
"""
QUICKSTART_SUBMIT = """\
curl -sS -X POST -H "Authorization: Bearer $TOKEN" \\
-H "Content-Type: application/json" \\
https://dev.computalot.com/api/v1/jobs \\
-d '{"type": "structured_runner", "runner_command": ["python3", "script.py"], "payload": {"test": true}, "project": "my-proj", "timeout_s": 120}'
"""
QUICKSTART_STATUS = """\
curl -sS -H "Authorization: Bearer $TOKEN" \\
https://dev.computalot.com/api/v1/projects/my-proj/status
"""
QUICKSTART_RESULTS = """\
curl -sS -H "Authorization: Bearer $TOKEN" https://dev.computalot.com/api/v1/results/<job_id>
"""

SCRIPT = """\
import json, os
payload = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
with open(os.environ["COMPUTALOT_TASK_RESULT"], "w") as fh:
    json.dump({"ok": True, "payload": payload}, fh)
"""
DOCKERFILE = "FROM python:3.11-slim\nWORKDIR /app\nCOPY . /app\n"


def is_oci_warning(text: str) -> bool:
    return "Dockerfile" in text and "not built" in text


def run_shell(script: str, cwd: Path, base: str, name: str, token: str) -> Any:
    script = script.replace(SEED_HOST, base).replace(SEED_PROJECT, name)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TOKEN": token, "HOME": str(cwd)}
    done = subprocess.run(
        ["bash", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    return json.loads(done.stdout)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("manifest", ["oci", "absent", "python"])
def test_seed_quickstart_with_curl(
    admin: httpx.Client, platform: Any, tmp_path: Path, manifest: str
) -> None:
    name = f"qs-{manifest}-{uuid.uuid4().hex[:8]}"
    base, token = str(platform.url).rstrip("/"), str(platform.admin_key)
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    (tmp_path / "script.py").write_text(SCRIPT)
    push = QUICKSTART_PUSH
    if manifest == "absent":
        push = push.replace(" computalot.project.json", "")
    else:
        runtime = {"kind": manifest}
        if manifest == "oci":
            runtime["sandbox"] = "gvisor"
        (tmp_path / "computalot.project.json").write_text(
            json.dumps({"version": 1, "runtime": runtime})
        )

    created = run_shell(QUICKSTART_CREATE, tmp_path, base, name, token)
    assert created["name"] == name, created
    assert created["remote_dir"] == f"/root/projects/{name}"
    assert created["active_revision"] is None

    pushed = run_shell(push, tmp_path, base, name, token)
    assert pushed["project"] == name, pushed
    assert pushed["revision"]["id"].startswith("rev_")
    assert pushed["can_accept_new_jobs"] is True
    files = {"Dockerfile", "script.py"} | (
        {"computalot.project.json"} if manifest != "absent" else set()
    )
    assert sorted(pushed["tarball_diff"]["added"]) == sorted(files)
    wants_warning = manifest in ("oci", "absent")
    assert any(is_oci_warning(w) for w in pushed["warnings"]) is wants_warning, pushed

    status = run_shell(QUICKSTART_STATUS, tmp_path, base, name, token)
    assert status["revision_id"] == pushed["revision"]["id"]
    assert status["can_accept_new_jobs"] is True

    job = run_shell(QUICKSTART_SUBMIT, tmp_path, base, name, token)
    assert job["id"].startswith("job_"), job
    assert job["project"] == name
    assert job["revision_id"] == pushed["revision"]["id"]
    assert any(is_oci_warning(w) for w in job["warnings"]) is wants_warning, job
    end = wait_job(admin, job["id"])
    assert end["status"] == "completed", end
    assert any(is_oci_warning(w) for w in end["warnings"]) is wants_warning, end

    results_script = QUICKSTART_RESULTS.replace("<job_id>", job["id"])
    results = run_shell(results_script, tmp_path, base, name, token)
    assert results["job_id"] == job["id"]
    assert results["status"] == "completed"
    assert results["aggregate_result"] == {"ok": True, "payload": {"test": True}}
    assert [r["result"] for r in results["results"]] == [{"ok": True, "payload": {"test": True}}]


# ---- tenancy ---------------------------------------------------------------------------------
def test_other_account_sees_404_everywhere(
    new_account: Callable[..., httpx.Client], make_project: Callable[..., str]
) -> None:
    owner, other = new_account(), new_account()
    name = make_project(owner, {"script.py": SCRIPT})
    submitted = owner.post(
        f"{API}/jobs",
        json={"project": name, "runner_command": ["python3", "script.py"], "payload": {"a": 1}},
    )
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    wait_job(owner, job_id)
    job_before = owner.get(f"{API}/jobs/{job_id}").json()
    project_before = owner.get(f"{API}/projects/{name}").json()

    own_name = make_project(other, {"script.py": SCRIPT})
    own_job = other.post(
        f"{API}/jobs", json={"project": own_name, "runner_command": ["python3", "script.py"]}
    ).json()["id"]

    attempts = [
        ("GET", f"/jobs/{job_id}", None),
        ("GET", f"/jobs/{job_id}/tasks", None),
        ("GET", f"/jobs/{job_id}/output", None),
        ("GET", f"/jobs/{job_id}/events", None),
        ("GET", f"/jobs/{job_id}/stream", None),
        ("GET", f"/jobs/watch?ids={job_id}", None),
        ("GET", f"/jobs/watch?ids={own_job},{job_id}", None),
        ("PUT", f"/jobs/{job_id}/cancel", None),
        ("GET", f"/results/{job_id}", None),
        ("GET", f"/projects/{name}", None),
        ("PUT", f"/projects/{name}", {"description": "mine now"}),
        ("DELETE", f"/projects/{name}", None),
        ("POST", f"/projects/{name}/push", make_tarball({"x.py": "print(1)\n"})),
        ("GET", f"/projects/{name}/status", None),
        ("GET", f"/projects/{name}/status/details", None),
        (
            "POST",
            "/jobs",
            {"project": name, "runner_command": ["python3", "script.py"]},
        ),
    ]
    for method, path, body in attempts:
        kwargs: dict[str, Any] = {}
        if isinstance(body, bytes):
            kwargs["content"] = body
        elif body is not None:
            kwargs["json"] = body
        answer = other.request(method, API + path, timeout=30, **kwargs)
        assert answer.status_code == 404, (method, path, answer.status_code, answer.text[:300])
        assert answer.json()["error"]["code"] == "not_found", (method, path, answer.text)

    depends = other.post(
        f"{API}/jobs",
        json={
            "project": own_name,
            "runner_command": ["python3", "script.py"],
            "depends_on": [job_id],
        },
    )
    assert depends.status_code in (404, 422), depends.text

    listed = other.get(f"{API}/jobs", params={"limit": 500}).json()["jobs"]
    assert job_id not in {j["id"] for j in listed}
    assert own_job in {j["id"] for j in listed}
    assert other.get(f"{API}/jobs", params={"project": name}).json()["jobs"] == []
    projects = other.get(f"{API}/projects").json()["projects"]
    assert [p["name"] for p in projects] == [own_name]

    # Nothing the other account tried changed anything.
    assert owner.get(f"{API}/jobs/{job_id}").json() == job_before
    assert owner.get(f"{API}/projects/{name}").json() == project_before
    # Names are per account: the other account may use the same project name.
    assert other.post(f"{API}/projects", json={"name": name}).status_code == 201
    wait_job(other, own_job)


# ---- hostile tarballs ------------------------------------------------------------------------
def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        ok = tarfile.TarInfo("ok.py")
        ok.size = 3
        tar.addfile(ok, io.BytesIO(b"ok\n"))
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _member(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"pwned\n", **attrs: Any
) -> Any:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


def _hostile_corpus(marker: str) -> list[tuple[str, str, bytes]]:
    """(case, member name the error must name, tarball bytes)."""
    up = f"../evil-{marker}"
    deep = f"sub/../../evil-{marker}-deep"
    absolute = f"/tmp/evil-{marker}-abs"
    return [
        ("dotdot", up, _tar([_member(up)])),
        ("dotdot-nested", deep, _tar([_member(deep)])),
        ("absolute", absolute, _tar([_member(absolute)])),
        (
            "symlink-out",
            "link-out",
            _tar(
                [
                    _member("link-out", tarfile.SYMTYPE, linkname=f"/tmp/evil-{marker}-link"),
                    _member("link-out/evil.txt"),
                ]
            ),
        ),
        (
            "symlink-relative-out",
            "rel-link",
            _tar([_member("rel-link", tarfile.SYMTYPE, linkname=f"../../evil-{marker}-rel")]),
        ),
        (
            "hardlink-out",
            "hard-out",
            _tar([_member("hard-out", tarfile.LNKTYPE, linkname="/etc/passwd")]),
        ),
        (
            "char-device",
            "dev-null",
            _tar([_member("dev-null", tarfile.CHRTYPE, devmajor=1, devminor=3)]),
        ),
        ("block-device", "dev-sda", _tar([_member("dev-sda", tarfile.BLKTYPE, devmajor=8)])),
        ("fifo", "a-fifo", _tar([_member("a-fifo", tarfile.FIFOTYPE)])),
    ]


def _too_many_members(count: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for i in range(count):
            tar.addfile(tarfile.TarInfo(f"f/{i}"), io.BytesIO(b""))
    return buf.getvalue()


def _declared_huge() -> bytes:
    """A header claiming 3 GiB, followed by no data: only the declaration is checked."""
    info = tarfile.TarInfo("huge.bin")
    info.size = 3 * 1024**3
    raw = info.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 1024
    return gzip.compress(raw)


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_hostile_tarballs_are_refused_and_write_nothing(
    admin: httpx.Client, make_project: Callable[..., str], platform: Any
) -> None:
    name = make_project(admin, {"script.py": SCRIPT})
    before = admin.get(f"{API}/projects/{name}").json()["active_revision"]
    data_dir = Path(platform.settings.data_dir).resolve()
    marker = uuid.uuid4().hex
    tmp_before = set(os.listdir("/tmp"))
    revisions_before = _snapshot(data_dir / "revisions")

    for case, member, body in _hostile_corpus(marker):
        answer = admin.post(f"{API}/projects/{name}/push", content=body)
        assert answer.status_code == 400, (case, answer.status_code, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "bad_request", (case, error)
        assert member in error["message"], (case, error)
        assert error["details"][0]["loc"] == ["tarball", member], (case, error)
        assert error["recommended_action"], (case, error)

    too_large = [
        ("20001-members", _too_many_members(20_001)),
        ("declared-3GiB", _declared_huge()),
    ]
    for case, body in too_large:
        answer = admin.post(f"{API}/projects/{name}/push", content=body)
        assert answer.status_code == 413, (case, answer.status_code, answer.text)
        assert answer.json()["error"]["code"] == "payload_too_large", (case, answer.text)

    unreadable = [
        ("not-gzip", b"this is not a tarball at all, just text" * 20),
        ("gzip-not-tar", gzip.compress(b"\x01\x02 definitely not a tar header " * 64)),
        ("truncated-gzip", make_tarball({"a.py": "x" * 5000})[:-40]),
    ]
    for case, body in unreadable:
        answer = admin.post(f"{API}/projects/{name}/push", content=body)
        assert answer.status_code == 400, (case, answer.status_code, answer.text)
        assert answer.json()["error"]["code"] == "bad_request", (case, answer.text)
    empty = admin.post(f"{API}/projects/{name}/push", content=b"")
    assert empty.status_code == 400, empty.text

    # Nothing landed outside the platform, and no half-extracted revision stayed behind.
    new_in_tmp = set(os.listdir("/tmp")) - tmp_before
    assert not [n for n in new_in_tmp if marker in n or n.startswith("evil")], new_in_tmp
    for path in (
        f"/tmp/evil-{marker}",
        f"/tmp/evil-{marker}-abs",
        f"/tmp/evil-{marker}-link",
        f"/tmp/evil-{marker}-deep",
    ):
        assert not os.path.lexists(path), path
    for root in (data_dir.parent, data_dir):
        assert not [p for p in root.rglob(f"*evil-{marker}*")], root
    assert _snapshot(data_dir / "revisions") == revisions_before
    leftovers = list((data_dir / "uploads").glob("*")) if (data_dir / "uploads").exists() else []
    assert leftovers == [], leftovers

    after = admin.get(f"{API}/projects/{name}").json()["active_revision"]
    assert after == before
    status = admin.get(f"{API}/projects/{name}/status").json()
    assert status["revision_id"] == before["id"]


# ---- revisions -------------------------------------------------------------------------------
def test_push_is_content_addressed_and_diffs(
    admin: httpx.Client, make_project: Callable[..., str]
) -> None:
    files: dict[str, str | bytes] = {
        "script.py": SCRIPT,
        "lib/util.py": "X = 1\n",
        "README": "hi\n",
    }
    name = make_project(admin, files)
    first = admin.get(f"{API}/projects/{name}").json()["active_revision"]
    assert first["files"] == 3

    same = admin.post(
        f"{API}/projects/{name}/push", content=make_tarball(dict(reversed(files.items())))
    )
    assert same.status_code == 200, same.text
    assert same.json()["revision"]["id"] == first["id"]
    assert same.json()["revision"]["content_hash"] == first["content_hash"]
    assert same.json()["tarball_diff"] == {
        "added": [],
        "removed": [],
        "modified": [],
        "unchanged": 3,
    }

    changed = {"script.py": SCRIPT + "# changed\n", "lib/util.py": "X = 1\n", "new.txt": "n\n"}
    second = admin.post(f"{API}/projects/{name}/push", content=make_tarball(changed))
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["revision"]["id"] != first["id"]
    assert body["tarball_diff"] == {
        "added": ["new.txt"],
        "removed": ["README"],
        "modified": ["script.py"],
        "unchanged": 1,
    }
    assert (
        admin.get(f"{API}/projects/{name}").json()["active_revision"]["id"]
        == body["revision"]["id"]
    )

    # Executable bit counts as a change.
    modes = make_tarball(changed, modes={"lib/util.py": 0o755})
    third = admin.post(f"{API}/projects/{name}/push", content=modes)
    assert third.json()["tarball_diff"]["modified"] == ["lib/util.py"]

    back = admin.post(f"{API}/projects/{name}/push", content=make_tarball(files))
    assert back.status_code == 200, back.text
    assert back.json()["revision"]["id"] == first["id"], "identical content maps to its revision"
    assert admin.get(f"{API}/projects/{name}").json()["active_revision"]["id"] == first["id"]


def test_project_crud_and_delete_rules(
    admin: httpx.Client, make_project: Callable[..., str]
) -> None:
    name = make_project(admin, {"script.py": SCRIPT})
    dup = admin.post(f"{API}/projects", json={"name": name})
    assert dup.status_code == 409, dup.text
    bad = admin.post(f"{API}/projects", json={"name": "Bad Name!"})
    assert bad.status_code == 422, bad.text
    updated = admin.put(f"{API}/projects/{name}", json={"description": "d", "remote_dir": "/x"})
    assert updated.status_code == 200, updated.text
    assert (updated.json()["description"], updated.json()["remote_dir"]) == ("d", "/x")
    listed = [p["name"] for p in admin.get(f"{API}/projects").json()["projects"]]
    assert name in listed
    deleted = admin.delete(f"{API}/projects/{name}")
    assert deleted.status_code == 200, deleted.text
    assert admin.get(f"{API}/projects/{name}").status_code == 404
