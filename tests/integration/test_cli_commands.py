"""The ``computalot`` command through its real entry point, in a subprocess at 80 columns,
against the real server (issue #20): the seed's CLI lines, login and its precedence, artifacts,
KV, a paid top-up, submit from a JSON file with --watch, and the documented exit codes with
one error line (a traceback only with --debug)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account

COMPUTALOT = Path(sys.executable).with_name("computalot")

RUNNER = """
import json, os, sys
p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
print("hello from", p.get("n"), flush=True)
if p.get("fail"):
    sys.exit(3)
json.dump({"n": p.get("n")}, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A user's home of the test's own: the stored login goes under it."""
    path = tmp_path / "home"
    path.mkdir()
    return path


def cli(
    home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run ``computalot ARGS`` as a user would: 80 columns, the test's home and config dir,
    no COMPUTALOT_* setting but those in ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("COMPUTALOT_")}
    base.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "COLUMNS": "80"})
    return subprocess.run(
        [str(COMPUTALOT), *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=timeout,
    )


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    assert "Traceback" not in done.stderr
    return done.stdout


def _token(member: httpx.Client) -> str:
    return str(member.headers["Authorization"].split()[1])


def test_login_is_stored_private_and_flags_and_environment_win(
    platform: Any, new_account: Callable[..., httpx.Client], home: Path
) -> None:
    member = new_account()
    url, token = str(platform.url), _token(member)
    bad = cli(home, "login", "--url", url, "--token", "flk_not_a_real_key")
    assert bad.returncode == 4 and "unauthorized" in bad.stderr and "Traceback" not in bad.stderr
    stored = home / ".config" / "computalot" / "credentials"
    assert not stored.exists(), "a refused token is not kept"

    assert member.account["name"] in _ok(cli(home, "login", "--url", url, "--token", token))  # type: ignore[attr-defined]
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    assert json.loads(stored.read_text()) == {"url": url.rstrip("/"), "token": token}

    me = json.loads(_ok(cli(home, "account", "--json")))  # neither flag nor environment
    assert me["id"] == member.account["id"]  # type: ignore[attr-defined]
    wrong = {"COMPUTALOT_TOKEN": "flk_from_the_environment"}
    assert cli(home, "account", env=wrong).returncode == 4  # the environment beats the login
    assert _ok(cli(home, "account", "--json", "--token", token, env=wrong))  # a flag beats both
    elsewhere = cli(home, "account", env={"COMPUTALOT_URL": "http://127.0.0.1:9"})
    assert elsewhere.returncode == 3, "the stored token never goes to another URL"
    assert "Traceback" not in elsewhere.stderr
    assert len(elsewhere.stderr.strip().splitlines()) == 2  # the error line and its hint
    _ok(cli(home, "logout"))
    assert not stored.exists()


def test_the_seed_cli_lines_and_whole_ids_at_80_columns(
    platform: Any, new_account: Callable[..., httpx.Client], make_project: Any, home: Path
) -> None:
    member = new_account()
    project = make_project(member, {"runner.py": RUNNER})
    env = {"COMPUTALOT_URL": str(platform.url), "COMPUTALOT_TOKEN": _token(member)}
    job_file = home / "job.json"
    body = {"project": project, "runner_command": ["python3", "runner.py"], "payload": {"n": 5}}
    job_file.write_text(json.dumps(body))
    watched = _ok(cli(home, "submit", "--file", str(job_file), "--tag", "cli", "--watch", env=env))
    assert "hello from 5" in watched and "completed" in watched

    assert "llms" in _ok(cli(home, "docs", "--llm", env=env)).lower()
    listed = _ok(cli(home, "jobs", "--limit", "5", env=env))
    jobs = json.loads(_ok(cli(home, "jobs", "--limit", "5", "--json", env=env)))["jobs"]
    assert jobs and all(job["id"] in listed for job in jobs)  # never cut at 80 columns
    shown = _ok(cli(home, "job", jobs[0]["id"], env=env))
    assert jobs[0]["id"] in shown and "completed" in shown
    results = json.loads(_ok(cli(home, "results", jobs[0]["id"], "--json", env=env)))
    assert results["results"][0]["result"] == {"n": 5}

    failing = {**body, "payload": {"n": 6, "fail": True}}
    job_file.write_text(json.dumps(failing))
    failed = cli(home, "submit", "--file", str(job_file), "--watch", env=env)
    assert failed.returncode == 1 and "failed" in failed.stdout  # the job ended, not completed
    missing = cli(home, "job", "job_" + "x" * 20, env=env)
    assert missing.returncode == 5 and missing.stderr.startswith("error: not_found")
    usage = cli(home, "submit", "--payload", "{nope", env=env)
    assert usage.returncode == 2


def test_artifacts_kv_and_topup_commands(
    platform: Any, new_account: Callable[..., httpx.Client], make_project: Any, home: Path
) -> None:
    member = new_account(credit_usd=None)
    project = make_project(member, {"runner.py": RUNNER})
    env = {"COMPUTALOT_URL": str(platform.url), "COMPUTALOT_TOKEN": _token(member)}

    data = home / "data.bin"
    data.write_bytes(os.urandom(300_000))
    art = json.loads(_ok(cli(home, "artifacts", "upload", str(data), "--json", env=env)))
    assert art["size"] == 300_000
    parts = json.loads(_ok(cli(home, "artifacts", "upload", str(data), "--multipart", "--json",
                               "--filename", "again.bin", env=env)))  # fmt: skip
    assert parts["sha256"] == art["sha256"] and parts["filename"] == "again.bin"
    out = home / "out"
    out.mkdir()
    _ok(cli(home, "artifacts", "download", art["id"], str(out), env=env))
    assert (out / "data.bin").read_bytes() == data.read_bytes()
    table = _ok(cli(home, "artifacts", "list", env=env))
    assert art["id"] in table and parts["id"] in table
    gone = cli(home, "artifacts", "download", "art_" + "x" * 20, str(out), env=env)
    assert gone.returncode == 5 and "Traceback" not in gone.stderr

    key = f"runs/{uuid.uuid4().hex[:6]}"
    assert "version 1" in _ok(cli(home, "kv", "put", project, key, '{"loss": 0.5}', env=env))
    assert json.loads(_ok(cli(home, "kv", "get", project, key, env=env))) == {"loss": 0.5}
    clash = cli(home, "kv", "put", project, key, "1", "--if-match", "0", env=env)
    assert clash.returncode == 7 and "conflict" in clash.stderr
    entry = json.loads(_ok(cli(home, "kv", "get", project, key, "--json", env=env)))
    assert entry["version"] == 1
    assert key in _ok(cli(home, "kv", "list", project, env=env))
    assert cli(home, "kv", "get", project, "no/such/key", env=env).returncode == 5

    unpaid = cli(home, "topup", "2", env=env)
    assert unpaid.returncode == 6 and "quote_" in unpaid.stdout
    wallet = Account.create()
    key_file = home / "wallet.key"
    key_file.write_text(wallet.key.hex())
    receipt = json.loads(_ok(cli(home, "topup", "2.5", "--key-file", str(key_file), "--json",
                                 env=env)))  # fmt: skip
    assert receipt["quote"]["payer"] == wallet.address.lower()
    assert receipt["ledger_entry"]["amount_usd"] == 2.5
    money = json.loads(_ok(cli(home, "balance", "--json", env=env)))
    assert money["available_usd"] == pytest.approx(2.5)


def test_errors_are_one_line_and_debug_shows_the_traceback(platform: Any, home: Path) -> None:
    env = {"COMPUTALOT_URL": str(platform.url), "COMPUTALOT_TOKEN": "flk_nope"}
    plain = cli(home, "jobs", env=env)
    assert plain.returncode == 4
    assert plain.stderr.startswith("error: unauthorized") and "Traceback" not in plain.stderr
    debug = cli(home, "--debug", "jobs", env=env)
    assert debug.returncode == 4 and "Traceback" in debug.stderr
    assert "error: unauthorized" in debug.stderr
    down = cli(home, "jobs", env={"COMPUTALOT_URL": "http://127.0.0.1:9"})
    assert down.returncode == 3 and "Traceback" not in down.stderr + down.stdout
