from pathlib import Path

import pytest

from computalot.settings import ConfigError, load_settings


def test_defaults_resolve_to_sqlite_in_data_dir(tmp_path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert (
        settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/computalot.db"
    )
    assert settings.resolved_public_url == "http://127.0.0.1:8000"
    assert settings.binds_loopback_only


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("COMPUTALOT_PORT", "99999", "COMPUTALOT_PORT"),
        ("COMPUTALOT_PORT", "eighty", "COMPUTALOT_PORT"),
        ("COMPUTALOT_DATABASE_URL", "mysql://x", "COMPUTALOT_DATABASE_URL"),
        ("COMPUTALOT_HOST", "not a host", "COMPUTALOT_HOST"),
        ("COMPUTALOT_RATE_LIMIT_PER_MINUTE", "0", "COMPUTALOT_RATE_LIMIT_PER_MINUTE"),
    ],
)
def test_bad_values_fail_fast_naming_the_variable(monkeypatch, name, value, fragment) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert fragment in str(info.value)


def test_postgres_url_gets_async_driver(monkeypatch) -> None:
    monkeypatch.setenv("COMPUTALOT_DATABASE_URL", "postgresql://u@db/x")
    assert load_settings().resolved_database_url == "postgresql+asyncpg://u@db/x"


def test_public_bind_is_not_loopback() -> None:
    assert not load_settings(host="0.0.0.0").binds_loopback_only


def test_every_secret_setting_is_kept_out_of_the_environment() -> None:
    import typing

    from pydantic import SecretStr

    from computalot.settings import SECRET_SETTINGS, Settings

    def secret(annotation: object) -> bool:
        return annotation is SecretStr or any(secret(a) for a in typing.get_args(annotation))

    secret_fields = {n for n, field in Settings.model_fields.items() if secret(field.annotation)}
    assert secret_fields == {"metrics_token", "task_token_secret"}
    assert secret_fields <= set(SECRET_SETTINGS)
    assert "database_url" in SECRET_SETTINGS  # a PostgreSQL URL may carry a password


def test_settings_env_leaves_the_secrets_out(monkeypatch, tmp_path) -> None:
    from computalot.settings import Secrets, load_settings_with, settings_env

    url = "postgresql+asyncpg://u:hunter2@db/x"
    monkeypatch.setenv("COMPUTALOT_DATABASE_URL", url)
    monkeypatch.setenv("COMPUTALOT_METRICS_TOKEN", "tok-123")
    monkeypatch.setenv("computalot_metrics_token", "tok-123")  # names are case-insensitive
    monkeypatch.setenv("COMPUTALOT_KILL_GRACE_S", "2.5")
    settings = load_settings(data_dir=tmp_path)
    env = settings_env(settings)
    assert env["COMPUTALOT_KILL_GRACE_S"] == "2.5"
    assert not [k for k in env if "DATABASE_URL" in k.upper() or "METRICS_TOKEN" in k.upper()]
    assert "hunter2" not in repr(env) and "tok-123" not in repr(env)

    secrets = Secrets.of(settings)
    assert "hunter2" not in repr(secrets) and "tok-123" not in str(secrets)
    # Another process: the non-secret settings from its environment, the secrets as argument.
    for name in ("COMPUTALOT_DATABASE_URL", "COMPUTALOT_METRICS_TOKEN", "computalot_metrics_token"):
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    rebuilt = load_settings_with(secrets)
    assert rebuilt.resolved_database_url == url
    assert rebuilt.metrics_token is not None
    assert rebuilt.metrics_token.get_secret_value() == "tok-123"
    assert rebuilt.kill_grace_s == 2.5


def test_drop_secret_env_removes_only_the_secrets() -> None:
    from computalot.settings import drop_secret_env

    environ = {
        "COMPUTALOT_DATABASE_URL": "sqlite+aiosqlite:///x.db",
        "Computalot_Metrics_Token": "t",
        "COMPUTALOT_PORT": "8001",
        "PATH": "/bin",
    }
    assert sorted(drop_secret_env(environ)) == [
        "COMPUTALOT_DATABASE_URL",
        "Computalot_Metrics_Token",
    ]
    assert environ == {"COMPUTALOT_PORT": "8001", "PATH": "/bin"}


def test_a_submitted_jobs_runtime_env_loses_the_secrets(monkeypatch) -> None:
    import json
    import os

    from computalot.platform import RAY_JOB_CONFIG_ENV, keep_secrets_out_of_env

    config = {
        "runtime_env": {
            "env_vars": {"COMPUTALOT_DATABASE_URL": "postgresql://u:pw@db/x", "FOO": "1"},
            "working_dir": "gcs://x.zip",
        },
        "metadata": {"a": "b"},
    }
    monkeypatch.setenv(RAY_JOB_CONFIG_ENV, json.dumps(config))
    monkeypatch.setenv("COMPUTALOT_DATABASE_URL", "postgresql://u:pw@db/x")
    monkeypatch.setenv("COMPUTALOT_METRICS_TOKEN", "tok")
    monkeypatch.setenv("COMPUTALOT_PORT", "8001")
    keep_secrets_out_of_env()
    assert "COMPUTALOT_DATABASE_URL" not in os.environ
    assert "COMPUTALOT_METRICS_TOKEN" not in os.environ
    assert os.environ["COMPUTALOT_PORT"] == "8001"
    left = json.loads(os.environ[RAY_JOB_CONFIG_ENV])
    assert left["runtime_env"] == {"env_vars": {"FOO": "1"}, "working_dir": "gcs://x.zip"}
    assert left["metadata"] == {"a": "b"}


def test_ready_warns_while_x402_pays_the_placeholder_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    monkeypatch.delenv("COMPUTALOT_X402_PAY_TO", raising=False)  # the session platform sets it

    from computalot.settings import X402_PLACEHOLDER_PAY_TO, load_settings
    from serve_app.app import create_app

    def warnings(**overrides: str) -> list[str]:
        settings = load_settings(data_dir=tmp_path, sandbox="none", **overrides)
        with TestClient(create_app(settings)) as client:
            return list(client.get("/ready").json()["warnings"])

    assert load_settings().x402_pay_to == X402_PLACEHOLDER_PAY_TO
    assert any("COMPUTALOT_X402_PAY_TO" in w for w in warnings())
    wallet = "0x00000000000000000000000000000000c0ffee01"
    assert not any("COMPUTALOT_X402_PAY_TO" in w for w in warnings(x402_pay_to=wallet))
