"""CLI login storage and precedence, ``--debug`` parsing and the exit-code table, unit level."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer

from computalot.cli import entry, login
from computalot.cli.exits import Exit, exit_code
from computalot.sdk import errors
from tests.support.mock_api import envelope


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "xdg" / "computalot" / "credentials"


def test_the_login_file_is_private_and_read_back(config: Path) -> None:
    assert login.load() == login.Stored(None, None)
    assert login.save("http://api.test/", "flk_1") == config
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    assert login.load() == login.Stored("http://api.test", "flk_1")
    config.parent.chmod(0o755)  # a loose directory is tightened on the next save
    login.save("http://api.test", "flk_2")
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    assert login.forget() and not login.forget()


def test_without_xdg_the_login_lives_under_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert login.credentials_path() == tmp_path / ".config" / "computalot" / "credentials"


def test_flags_and_environment_beat_the_login_whose_token_stays_with_its_url(
    config: Path,
) -> None:
    assert login.resolve(None, None) == ("http://127.0.0.1:8000", None)
    login.save("http://api.test", "flk_stored")
    assert login.resolve(None, None) == ("http://api.test", "flk_stored")
    assert login.resolve(None, "flk_flag") == ("http://api.test", "flk_flag")
    assert login.resolve("http://api.test/", None) == ("http://api.test", "flk_stored")
    assert login.resolve("http://other.test", None) == ("http://other.test", None)
    config.write_text("not json")
    assert login.resolve(None, None) == ("http://127.0.0.1:8000", None)


def test_debug_is_taken_out_of_the_arguments_before_a_double_dash() -> None:
    assert entry.split_debug(["--debug", "jobs"]) == (["jobs"], True)
    assert entry.split_debug(["jobs", "--debug", "--json"]) == (["jobs", "--json"], True)
    assert entry.split_debug(["kv", "--", "--debug"]) == (["kv", "--", "--debug"], False)


def _error(status: int, code: str) -> errors.ApiError:
    answer = httpx.Response(status, json=envelope(code, "x"))
    return errors.error_from_response(answer)


@pytest.mark.parametrize(
    ("status", "code", "exit"),
    [
        (400, "bad_request", Exit.REFUSED),
        (401, "unauthorized", Exit.AUTH),
        (402, "payment_required", Exit.PAYMENT),
        (403, "forbidden", Exit.AUTH),
        (404, "not_found", Exit.NOT_FOUND),
        (409, "not_available", Exit.REFUSED),
        (413, "payload_too_large", Exit.REFUSED),
        (418, "teapot", Exit.REFUSED),
        (422, "validation_error", Exit.REFUSED),
        (429, "quota_exceeded", Exit.RATE_LIMITED),
        (500, "internal_error", Exit.SERVER),
        (503, "not_ready", Exit.SERVER),
    ],
)
def test_each_error_has_its_exit_code(status: int, code: str, exit: Exit) -> None:
    assert exit_code(_error(status, code)) == exit
    assert exit_code(errors.ApiConnectionError("down")) == Exit.NO_ANSWER


def test_the_entry_turns_escaped_errors_into_one_line_and_a_code(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COMPUTALOT_DEBUG", raising=False)
    app = typer.Typer()
    raised: list[BaseException] = [_error(404, "not_found"), RuntimeError("boom")]

    @app.command()
    def fail(which: int) -> None:
        raise raised[which]

    @app.command()
    def other() -> None:  # two commands: the name is an argument
        pass

    def run(*args: str) -> Any:
        with pytest.raises(SystemExit) as info:
            entry.run(app, list(args))
        return info.value.code, capsys.readouterr().err

    code, err = run("fail", "0")
    assert code == Exit.NOT_FOUND and err.startswith("error: not_found: x\n")
    code, err = run("fail", "1")
    assert code == Exit.INTERNAL and "RuntimeError: boom" in err and "Traceback" not in err
    code, err = run("--debug", "fail", "1")
    assert code == Exit.INTERNAL and "Traceback" in err
