"""SDK policies, unit level: what is retried and what never is, classes by error code, the
``.gitignore`` rules of ``push_project``, resumable multipart uploads and the public surface."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest

import computalot
import computalot.sdk
import computalot.sdk.errors as sdk_errors
from computalot.sdk.base import Req, RetryPolicy, build_tarball
from computalot.sdk.client import AsyncComputalotClient, ComputalotClient
from computalot.sdk.errors import (
    ApiConnectionError,
    ApiError,
    Conflict,
    NotAvailable,
    NotReady,
    QuotaExceeded,
    RateLimited,
    UnsatisfiableRequirements,
    ValidationError,
)
from computalot.sdk.ignore import ignored, parse_rules
from tests.support.mock_api import BASE, Recorder, client_for, envelope


def test_the_public_surface_is_pinned() -> None:
    assert computalot.__all__ == [
        "AsyncComputalotClient",
        "ComputalotClient",
        "verify_callback_signature",
    ]
    assert computalot.ComputalotClient is ComputalotClient
    assert computalot.AsyncComputalotClient is AsyncComputalotClient
    assert computalot.sdk.__all__ == ["AsyncComputalotClient", "ComputalotClient"]
    assert sdk_errors.__all__ == [
        "ApiConnectionError",
        "ApiError",
        "BadRequest",
        "Conflict",
        "Forbidden",
        "NotAvailable",
        "NotFound",
        "NotReady",
        "PayloadTooLarge",
        "PaymentRequired",
        "QuotaExceeded",
        "RateLimited",
        "ServerError",
        "Unauthorized",
        "UnsatisfiableRequirements",
        "ValidationError",
        "error_class",
        "error_from_response",
    ]


# --- retries --------------------------------------------------------------------------------


def _flaky(*answers: httpx.Response | Exception) -> Recorder:
    """Answers in turn (an exception is raised as the transport's), then 200 ``{"ok": true}``."""
    queue = list(answers)

    def reply(request: httpx.Request) -> httpx.Response:
        if not queue:
            return httpx.Response(200, json={"ok": True})
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return Recorder(reply)


def _reset() -> httpx.ReadError:
    return httpx.ReadError("connection reset")


def busy() -> httpx.Response:
    return httpx.Response(503, json=envelope("not_ready", "starting"))


def slow() -> httpx.Response:
    return httpx.Response(429, json=envelope("rate_limited", "slow"), headers={"Retry-After": "0"})


def quota() -> httpx.Response:
    return httpx.Response(429, json=envelope("quota_exceeded", "too many queued tasks"))


def test_idempotent_calls_are_retried_after_a_drop_a_429_and_a_503() -> None:
    rec = _flaky(_reset(), slow(), busy())
    assert client_for(rec).get_job("job_1") == {"ok": True}
    assert len(rec.requests) == 4
    rec = _flaky(_reset())
    assert client_for(rec).cancel_job("job_1") == {"ok": True}  # PUT: idempotent
    assert len(rec.requests) == 2


def test_a_submit_is_retried_with_the_same_idempotency_key() -> None:
    rec = _flaky(_reset(), busy())
    assert client_for(rec).submit_job(project="p") == {"ok": True}
    keys = {r.headers["idempotency-key"] for r in rec.requests}
    assert len(rec.requests) == 3 and len(keys) == 1


def test_non_idempotent_calls_and_quotas_are_never_retried() -> None:
    rec = _flaky(_reset())
    with pytest.raises(ApiConnectionError):
        client_for(rec).create_project("demo")  # POST without a key
    assert len(rec.requests) == 1
    rec = _flaky(quota())
    with pytest.raises(QuotaExceeded) as info:
        client_for(rec).submit_job(project="p")
    assert len(rec.requests) == 1 and isinstance(info.value, RateLimited)
    rec = _flaky(_reset())
    with pytest.raises(ApiConnectionError):
        client_for(rec).kv_put("demo", "k", 1, if_match=3)  # a compare-and-set may have landed
    assert len(rec.requests) == 1
    rec = _flaky(httpx.Response(500, json=envelope("internal_error", "boom")))
    with pytest.raises(ApiError):
        client_for(rec).get_job("job_1")
    assert len(rec.requests) == 1


def test_retries_stop_after_max_retries() -> None:
    rec = _flaky(*[_reset() for _ in range(10)])
    with pytest.raises(ApiConnectionError):
        client_for(rec).get_job("job_1")
    assert len(rec.requests) == 4  # the first try and three retries


def test_backoff_doubles_and_honours_retry_after() -> None:
    policy = RetryPolicy(backoff_s=1.0, max_backoff_s=5.0)
    lost = ApiConnectionError("x")
    assert 0.5 <= policy.delay(0, lost) <= 1.0
    assert 2.0 <= policy.delay(2, lost) <= 4.0
    assert 2.5 <= policy.delay(9, lost) <= 5.0
    slow = RateLimited("x", status=429, headers={"Retry-After": "3"})
    assert policy.delay(0, slow) == 3.0
    assert Req("POST", "/x", headers={"Idempotency-Key": "k"}).idempotent
    assert not Req("POST", "/x").idempotent and Req("DELETE", "/x").idempotent


async def test_the_async_client_retries_the_same_way() -> None:
    rec = _flaky(_reset(), busy())
    client = AsyncComputalotClient(BASE, "flk_t", transport=httpx.MockTransport(rec))
    client.retry = RetryPolicy(backoff_s=0.0, max_backoff_s=0.0)
    async with client:
        assert await client.list_jobs(limit=1) == {"ok": True}
    assert len(rec.requests) == 3


@pytest.mark.parametrize(
    ("status", "code", "cls", "parent"),
    [
        (409, "not_available", NotAvailable, Conflict),
        (422, "unsatisfiable_requirements", UnsatisfiableRequirements, ValidationError),
        (429, "quota_exceeded", QuotaExceeded, RateLimited),
        (503, "not_ready", NotReady, ApiError),
    ],
)
def test_an_error_code_of_its_own_gets_its_class(
    status: int, code: str, cls: type[ApiError], parent: type[ApiError]
) -> None:
    rec = Recorder(lambda req: httpx.Response(status, json=envelope(code, "no")))
    client = client_for(rec)
    client.retry = RetryPolicy(max_retries=0)
    with pytest.raises(cls) as info:
        client.get_job("job_1")
    assert isinstance(info.value, parent) and info.value.code == code


# --- .gitignore rules -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "path", "is_dir", "out"),
    [
        (["*.log"], "a/b/x.log", False, True),
        (["*.log", "!keep.log"], "a/keep.log", False, False),
        (["/build"], "build", True, True),
        (["/build"], "src/build", True, False),
        (["data/"], "data", False, False),  # a file named like a dir-only pattern stays
        (["data/"], "x/data", True, True),
        (["docs/*.md"], "docs/a.md", False, True),
        (["docs/*.md"], "docs/sub/a.md", False, False),
        (["**/cache/**"], "a/cache/b/c", False, True),
        (["a/**/z"], "a/z", False, True),
        (["a/**/z"], "a/b/c/z", False, True),
        (["\\#hash"], "#hash", False, True),
        (["# comment", ""], "comment", False, False),
        (["file?.txt"], "file1.txt", False, True),
        (["file[0-9].txt"], "filex.txt", False, False),
    ],
)
def test_gitignore_patterns(patterns: list[str], path: str, is_dir: bool, out: bool) -> None:
    assert ignored(parse_rules(patterns), path, is_dir) is out


def _names(tarball: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(tarball))) as tar:
        return set(tar.getnames())


def test_push_leaves_out_what_the_trees_ignore_files_and_the_caller_exclude(
    tmp_path: Path,
) -> None:
    files = {
        "job.py": "x",
        ".gitignore": "*.log\n/out/\n!important.log\n",
        "run.log": "x",
        "important.log": "x",
        "out/big.bin": "x",
        "sub/out/kept.txt": "x",
        "sub/.gitignore": "secret.txt\n",
        "sub/secret.txt": "x",
        "secret.txt": "x",
        "data/raw.csv": "x",
        ".computalotignore": "data/\n",
        "notes.md": "x",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert _names(build_tarball(tmp_path, patterns=["*.md"])) == {
        "job.py",
        ".gitignore",
        ".computalotignore",
        "important.log",
        "sub/out/kept.txt",
        "sub/.gitignore",
        "secret.txt",  # sub/.gitignore speaks for sub/ only
    }
    rec = Recorder()
    client_for(rec).push_project("demo", tmp_path, exclude=["secret.txt"])
    assert "secret.txt" not in _names(rec.last.content)


# --- resumable multipart --------------------------------------------------------------------


class MultipartServer:
    """The multipart routes, in memory; ``fail_part`` makes that part's first PUT a 500."""

    def __init__(self, part_size: int, fail_part: int | None = None) -> None:
        self.part_size = part_size
        self.fail_part = fail_part
        self.parts: dict[int, bytes] = {}
        self.size = 0
        self.puts: list[int] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/multipart") and request.method == "POST":
            import json

            self.size = json.loads(request.content)["size"]
            count = -(-self.size // self.part_size)
            body = {"upload_id": "upl_1", "part_size": self.part_size, "part_count": count}
            return httpx.Response(201, json=body)
        if "/parts/" in path:
            n = int(path.rsplit("/", 1)[1])
            self.puts.append(n)
            if n == self.fail_part:
                self.fail_part = None
                return httpx.Response(500, json=envelope("internal_error", "disk full"))
            self.parts[n] = request.content
            return httpx.Response(200, json={"n": n, "size": len(request.content)})
        if path.endswith("/complete"):
            data = b"".join(self.parts[n] for n in sorted(self.parts))
            return httpx.Response(200, json={"id": "art_1", "size": len(data)})
        count = -(-self.size // self.part_size)
        status = {
            "upload_id": "upl_1",
            "size": self.size,
            "part_size": self.part_size,
            "parts": [{"n": n, "size": len(b)} for n, b in self.parts.items()],
            "missing": [n for n in range(1, count + 1) if n not in self.parts],
        }
        return httpx.Response(200, json=status)


def test_a_failed_multipart_upload_resumes_sending_only_the_missing_parts(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes: 4 parts of 3,000
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    server = MultipartServer(3000, fail_part=3)
    client = client_for(Recorder(server))
    with pytest.raises(ApiError) as info:
        client.upload_artifact_resumable(path, part_size=3000)
    assert info.value.upload_id == "upl_1" and "upl_1" in info.value.recommended_action
    assert server.puts == [1, 2, 3]
    seen: list[int] = []
    done = client.upload_artifact_resumable(path, upload_id="upl_1", progress=seen.append)
    assert done == {"id": "art_1", "size": len(data)}
    assert server.puts == [1, 2, 3, 3, 4]  # parts 1 and 2 were not sent again
    assert sum(seen) == len(data)
    assert b"".join(server.parts[n] for n in sorted(server.parts)) == data


def test_resuming_with_another_file_is_refused(tmp_path: Path) -> None:
    server = MultipartServer(3000)
    server.size = 99
    path = tmp_path / "other.bin"
    path.write_bytes(b"x" * 10)
    with pytest.raises(ApiError) as info:
        client_for(Recorder(server)).upload_artifact_resumable(path, upload_id="upl_1")
    assert info.value.code == "upload_mismatch"


def test_transfers_report_progress(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"y" * 2_500_000)
    sent: list[int] = []
    client_for(Recorder()).upload_artifact(path, progress=sent.append)
    assert sum(sent) == 2_500_000 and len(sent) == 3

    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"z" * 5000)

    got: list[int] = []
    answer: Any = client_for(Recorder(serve)).download_artifact(
        "art_1", tmp_path / "out.bin", progress=got.append
    )
    assert sum(got) == 5000 == answer["size"]
