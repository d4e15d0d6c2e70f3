"""SDK and user CLI, unit level: request building, error mapping, tarballs, SSE resume.

Everything runs against ``httpx.MockTransport``; the real server is exercised by the
integration tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from computalot.cli import user as cli_user
from computalot.sdk.client import ComputalotClient
from tests.support.mock_api import (
    Handler,
    Recorder,
    body_of,
    client_for,
    envelope,
    event_stream,
    make_project,
    sse,
)

# --- CLI ------------------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def use_handler(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Callable[[Handler], list[tuple[str, Any]]]:
    """Point the CLI's client factory at a mock transport; returns the (url, token) it got.
    The user's config directory is an empty one of the test's (no stored login)."""
    monkeypatch.setattr(cli_user, "console", Console(width=200, highlight=False))
    monkeypatch.delenv("COMPUTALOT_URL", raising=False)
    monkeypatch.delenv("COMPUTALOT_TOKEN", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    def install(handler: Handler) -> list[tuple[str, Any]]:
        made: list[tuple[str, Any]] = []

        def factory(url: str, token: str | None) -> ComputalotClient:
            made.append((url, token))
            return client_for(handler, token)

        monkeypatch.setattr(cli_user, "client_factory", factory)
        return made

    return install


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    result = runner.invoke(cli_user.user_app, list(args), env=env)
    assert "Traceback" not in result.output
    return result


JOB = {
    "id": "job_1",
    "type": "structured_runner",
    "project": "demo",
    "status": "failed",
    "progress": 0.5,
    "task_counts": {"total": 4, "completed": 2, "failed": 2},
    "error": {"code": "tasks_failed", "message": "2 of 4 tasks failed"},
    "recommended_action": "read GET /jobs/job_1/tasks",
}


def test_cli_jobs_and_job_render(use_handler: Any) -> None:
    made = use_handler(
        lambda req: httpx.Response(
            200, json={"jobs": [JOB]} if req.url.path.endswith("/jobs") else JOB
        )
    )
    result = invoke("jobs", "--limit", "3", "--status", "failed", env={"COMPUTALOT_TOKEN": "flk_x"})
    assert result.exit_code == 0
    assert "job_1" in result.output and "failed" in result.output and "2/4" in result.output
    assert made == [("http://127.0.0.1:8000", "flk_x")]
    result = invoke("job", "job_1", "--url", "http://other.test")
    assert result.exit_code == 0
    assert "tasks_failed: 2 of 4 tasks failed" in result.output and "COMPLETED" in result.output
    assert json.loads(invoke("job", "job_1", "--json").output)["id"] == "job_1"


def test_cli_maps_api_errors_to_a_red_message_and_their_exit_code(use_handler: Any) -> None:
    use_handler(
        lambda req: httpx.Response(
            404, json=envelope("not_found", "job job_x not found", "list your jobs")
        )
    )
    result = invoke("job", "job_x")
    assert result.exit_code == 5  # Exit.NOT_FOUND
    assert "error: not_found: job job_x not found" in result.output
    assert "hint: list your jobs" in result.output

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    use_handler(refuse)
    result = invoke("jobs")
    assert result.exit_code == 3 and "error: connection_error" in result.output  # NO_ANSWER


def test_cli_submit_builds_the_job(use_handler: Any, tmp_path: Path) -> None:
    rec = Recorder(lambda req: httpx.Response(201, json={"id": "job_9", "status": "queued"}))
    use_handler(rec)
    (tmp_path / "p.json").write_text('{"models": ["a", "b"]}')
    result = invoke(
        "submit", "--project", "demo", "--runner", "python3 train.py --epochs 2",
        "--payload", f"@{tmp_path / 'p.json'}", "--fan-out", '{"by": "models"}',
        "--timeout", "60", "--max-retries", "1", "--tag", "a", "--tag", "b",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "job_9" in result.output
    assert body_of(rec.last) == {
        "project": "demo",
        "runner_command": ["python3", "train.py", "--epochs", "2"],
        "payload": {"models": ["a", "b"]},
        "fan_out": {"by": "models"},
        "timeout_s": 60,
        "max_retries": 1,
        "tags": ["a", "b"],
    }
    bad = invoke("submit", "--project", "demo", "--payload", "{nope")
    assert bad.exit_code == 2 and "not valid JSON" in bad.output


def watch_events(final: str) -> list[bytes]:
    return [
        sse(1, "job", {"id": "job_1", "status": "running", "task_counts": {"total": 2}}),
        sse(2, "task", {"task_id": "tsk_1", "index": 0, "status": "running"}),
        sse(3, "output", {"task_id": "tsk_1", "stream": "stdout", "text": "epoch 1 [done]\n"}),
        sse(4, "progress", {"task_id": "tsk_1", "progress": {"epoch": 1}}),
        sse(5, "task", {"task_id": "tsk_1", "index": 0, "status": "completed"}),
        sse(6, "task", {"task_id": "tsk_2", "index": 1, "status": final, "exit_code": 3}),
        sse(
            7, "end", {"id": "job_1", "status": final, "task_counts": {"total": 2, "completed": 2}}
        ),
    ]


@pytest.mark.parametrize(("final", "code"), [("completed", 0), ("failed", 1)])
def test_cli_watch_follows_the_stream(use_handler: Any, final: str, code: int) -> None:
    use_handler(lambda req: event_stream(watch_events(final)))
    result = invoke("watch", "job_1")
    assert result.exit_code == code, result.output
    assert "epoch 1 [done]" in result.output
    assert '[task 0] progress {"epoch": 1}' in result.output
    assert f"job job_1 {final}" in result.output
    if final == "failed":
        assert "[task 1] failed: exit code 3" in result.output
    lines = invoke("watch", "job_1", "--json").output.splitlines()
    assert [json.loads(line)["id"] for line in lines] == [1, 2, 3, 4, 5, 6, 7]


def test_cli_watch_of_several_jobs_uses_one_stream_and_a_bar_each(use_handler: Any) -> None:
    events = [
        sse(1, "job", {"job_id": "job_a", "id": "job_a", "status": "running",
                       "task_counts": {"total": 1}}),
        sse(2, "job", {"job_id": "job_b", "id": "job_b", "status": "running",
                       "task_counts": {"total": 3}}),
        sse(3, "output", {"job_id": "job_b", "task_id": "tsk_9", "text": "from b\n"}),
        sse(4, "end", {"job_id": "job_a", "id": "job_a", "status": "completed"}),
        sse(5, "end", {"job_id": "job_b", "id": "job_b", "status": "failed"}),
    ]  # fmt: skip
    rec = Recorder(lambda req: event_stream(events))
    use_handler(rec)
    result = invoke("watch", "job_a", "job_b")
    assert result.exit_code == 1, result.output  # one of them did not complete
    assert rec.last.url.path == "/api/v1/jobs/watch"
    assert rec.last.url.params["ids"] == "job_a,job_b"
    assert "job_b [tsk_9] from b" in result.output
    assert "job job_a completed" in result.output and "job job_b failed" in result.output


def test_cli_submit_from_a_file_and_to_a_recipe(use_handler: Any, tmp_path: Path) -> None:
    rec = Recorder(lambda req: httpx.Response(201, json={"id": "job_9", "status": "queued"}))
    use_handler(rec)
    job = {"project": "demo", "runner_command": ["python3", "a.py"], "timeout_s": 30}
    (tmp_path / "job.json").write_text(json.dumps(job))
    result = invoke("submit", "--file", str(tmp_path / "job.json"), "--timeout", "60")
    assert result.exit_code == 0, result.output
    assert body_of(rec.last) == {**job, "timeout_s": 60}  # a flag overrides the file
    assert rec.last.headers["idempotency-key"]
    result = invoke("submit", "--recipe", "packing", "--payload", '{"operation": "eval"}')
    assert result.exit_code == 0, result.output
    assert rec.last.url.path == "/api/v1/recipes/packing/jobs"
    assert body_of(rec.last) == {"payload": {"operation": "eval"}}
    (tmp_path / "list.json").write_text("[1]")
    bad = invoke("submit", "--file", str(tmp_path / "list.json"))
    assert bad.exit_code == 2 and "one JSON object" in bad.output


def test_cli_results_cancel_projects_presets_account_docs(use_handler: Any) -> None:
    answers = {
        "/api/v1/results/job_1": {"job_id": "job_1", "aggregate_result": [1, 2]},
        "/api/v1/jobs/job_1/cancel": {"id": "job_1", "status": "cancelled"},
        "/api/v1/projects": {
            "projects": [{"name": "demo", "active_revision": {"id": "rev_1", "files": 3}}]
        },
        "/api/v1/presets": {
            "presets": [{"name": "cpu-small", "requirements": {"cpu": 2}, "usd_per_hour": 0.1}]
        },
        "/api/v1/account": {"id": "acct_1", "name": "alice", "role": "member"},
    }

    def reply(req: httpx.Request) -> httpx.Response:
        if req.url.path in ("/llms.txt", "/skill.md"):
            return httpx.Response(200, text=f"text of {req.url.path}")
        if req.url.path in answers:
            return httpx.Response(200, json=answers[req.url.path])
        return httpx.Response(404, json=envelope("not_found", "no such route"))

    use_handler(reply)
    assert json.loads(invoke("results", "job_1").output)["aggregate_result"] == [1, 2]
    assert "job job_1 cancelled" in invoke("cancel", "job_1").output
    assert "rev_1" in invoke("projects").output
    assert "cpu=2" in invoke("presets").output
    account = invoke("account")
    assert account.exit_code == 0 and "alice" in account.output
    assert "text of /llms.txt" in invoke("docs", "--llm").output
    assert "text of /skill.md" in invoke("docs").output


def test_cli_push_creates_and_prints_the_diff(use_handler: Any, tmp_path: Path) -> None:
    answer = {
        "revision": {"id": "rev_7", "content_hash": "ab" * 32, "size_bytes": 10},
        "tarball_diff": {
            "added": ["job.py"],
            "removed": [],
            "modified": ["sub/mod.py"],
            "unchanged": 2,
        },
        "warnings": ["Dockerfile was not built"],
    }

    def reply(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/api/v1/projects":
            return httpx.Response(409, json=envelope("conflict", "project demo exists"))
        return httpx.Response(200, json=answer)

    rec = Recorder(reply)
    use_handler(rec)
    result = invoke("push", str(make_project(tmp_path / "p")), "--project", "demo", "--create")
    assert result.exit_code == 0, result.output
    assert [r.url.path for r in rec.requests] == ["/api/v1/projects", "/api/v1/projects/demo/push"]
    assert rec.last.headers["content-type"] == "application/gzip"
    assert (
        "rev_7" in result.output and "+1 added" in result.output and "~ sub/mod.py" in result.output
    )
    assert "warning: Dockerfile was not built" in result.output
    missing = invoke("push", str(tmp_path / "nope"), "--project", "demo")
    assert missing.exit_code == 2


def test_register_mounts_the_commands_on_another_app() -> None:
    app = typer.Typer()
    cli_user.register(app)
    names = {c.callback.__name__ for c in app.registered_commands if c.callback}
    assert {"docs", "jobs", "job", "submit", "watch", "results", "cancel", "push"} <= names
    assert {"projects", "account", "presets"} <= names
    assert cli_user.__name__ == "computalot.cli.user"


def test_cli_results_all_reads_every_page(use_handler: Any) -> None:
    pages = {
        None: {
            "job_id": "job_1",
            "summary": {"total": 3},
            "aggregate_result": [0, 1, 2],
            "results": [{"index": 0}],
            "next_cursor": "c1",
        },
        "c1": {
            "job_id": "job_1",
            "summary": {"total": 3},
            "aggregate_result": None,
            "results": [{"index": 1}],
            "next_cursor": "c2",
        },
        "c2": {
            "job_id": "job_1",
            "summary": {"total": 3},
            "aggregate_result": None,
            "results": [{"index": 2}],
            "next_cursor": None,
        },
    }
    use_handler(lambda req: httpx.Response(200, json=pages[req.url.params.get("cursor")]))
    data = json.loads(invoke("results", "job_1", "--all", "--json").output)
    assert [r["index"] for r in data["results"]] == [0, 1, 2]
    assert data["aggregate_result"] == [0, 1, 2] and data["next_cursor"] is None
    first_only = json.loads(invoke("results", "job_1", "--json").output)
    assert [r["index"] for r in first_only["results"]] == [0]
