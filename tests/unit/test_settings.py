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
