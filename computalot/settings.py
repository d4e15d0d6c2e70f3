"""Platform settings, read from ``COMPUTALOT_*`` environment variables.

Bad values fail at start with the name of the offending variable (:class:`ConfigError`), never
later in the middle of a request.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
import tomllib
from collections.abc import MutableMapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024
GiB = 1024 * MiB


#: ``x402_pay_to`` until the operator sets it: a burn address, so /ready warns about it.
X402_PLACEHOLDER_PAY_TO = "0x000000000000000000000000000000000000dEaD"


class ConfigError(RuntimeError):
    """A ``COMPUTALOT_*`` variable has a value we cannot use."""


#: The sections of a price table and the keys each may hold (``COMPUTALOT_PRICES``); preset
#: names are checked against the presets where the table is read (``computalot.billing``).
PRICE_RESOURCES = ("cpu_hour", "memory_gib_hour", "gpu_hour")


def read_price_table(value: str) -> dict[str, Any]:
    """``COMPUTALOT_PRICES``: JSON text (starting with ``{``) or the path of a JSON/TOML file."""
    text = value.strip()
    if not text.startswith("{"):
        path = Path(text).expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"cannot read the price file {str(path)!r}: {exc.strerror}") from None
        if path.suffix == ".toml":
            try:
                return tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"{str(path)!r} is not valid TOML: {exc}") from None
    try:
        table = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(table, dict):
        raise ValueError("must be a JSON object")
    return table


def check_price_table(table: dict[str, Any]) -> dict[str, dict[str, Decimal]]:
    """``{"presets": {name: usd_per_hour}, "resources": {cpu_hour|memory_gib_hour|gpu_hour:
    usd}}``, both optional; every price a non-negative number (USD per hour)."""
    unknown = set(table) - {"presets", "resources"}
    if unknown:
        raise ValueError(f"unknown section(s) {sorted(unknown)}; use presets and resources")
    out: dict[str, dict[str, Decimal]] = {}
    for section in ("presets", "resources"):
        prices = table.get(section, {})
        if not isinstance(prices, dict):
            raise ValueError(f"{section} must be an object of name -> USD per hour")
        if section == "resources" and set(prices) - set(PRICE_RESOURCES):
            wrong = sorted(set(prices) - set(PRICE_RESOURCES))
            raise ValueError(f"unknown resource price(s) {wrong}; use {', '.join(PRICE_RESOURCES)}")
        out[section] = {}
        for name, price in prices.items():
            if isinstance(price, bool) or not isinstance(price, int | float | str):
                raise ValueError(f"{section}.{name} must be a number")
            try:
                amount = Decimal(str(price))
            except ArithmeticError:
                raise ValueError(f"{section}.{name} must be a number") from None
            if not amount.is_finite() or amount < 0 or amount >= 10**9:
                raise ValueError(f"{section}.{name} must be between 0 and 10^9 USD per hour")
            out[section][str(name)] = amount
    return out


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COMPUTALOT_", extra="ignore")

    data_dir: Path = Field(default=Path(".computalot"), description="state directory")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; default SQLite in data_dir"
    )
    metrics_token: SecretStr | None = None
    #: Signs task tokens (``auth.task_tokens``); default: generated once in data_dir.
    task_token_secret: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str | None = Field(default=None, description="URL users reach the API at")
    ray_namespace: str = "computalot"

    # Serve tuning (docs/operating.md, "Tuning the API").
    serve_replicas: int = Field(default=1, ge=1, le=64)
    #: Every open SSE stream counts as one for its whole life; a request past the limit waits.
    serve_max_ongoing_requests: int = Field(default=4096, ge=1)
    #: Seconds between pushes of each process's figures to the metrics board, and between
    #: re-reads of terminal jobs' counts for ``computalot_jobs`` (docs/metrics.md).
    metrics_push_interval_s: float = Field(default=1.0, gt=0, le=60)
    metrics_jobs_refresh_s: float = Field(default=30.0, gt=0)

    # Limits.
    max_json_body_bytes: int = Field(default=16 * MiB, ge=1024)
    max_tarball_bytes: int = Field(default=512 * MiB, ge=1024)
    max_tarball_members: int = Field(default=20_000, ge=1)
    max_unpacked_bytes: int = Field(default=2 * GiB, ge=1024)
    rate_limit_per_minute: int = Field(default=6000, ge=1, description="requests per account")
    anon_rate_limit_per_minute: int = Field(
        default=60, ge=1, description="requests per client address to feedback, wallet challenge"
    )
    max_fanout_elements: int = Field(default=100_000, ge=1)
    max_result_bytes: int = Field(
        default=64 * MiB, ge=1024, description="largest result file one task may write"
    )
    max_job_result_bytes: int = Field(
        default=1 * GiB, ge=1024, description="all of one job's stored results together"
    )
    results_page_bytes: int = Field(
        default=16 * MiB, ge=1024, description="GET /results pages stop adding elements here"
    )

    # Artifacts (docs/llms-full.md, "Artifacts").
    artifact_store: str = Field(
        default="", description="'' = <data_dir>/artifacts; s3://bucket/prefix; or /a/directory"
    )
    artifact_s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible server, e.g. http://127.0.0.1:9000"
    )
    artifact_s3_region: str | None = None
    artifact_direct_ttl_s: int = Field(
        default=3600, ge=10, le=7 * 24 * 3600, description="life of a direct-upload URL"
    )
    max_artifact_bytes: int = Field(default=2 * GiB, ge=1024, description="one artifact")

    # Quotas (per account; 429 quota_exceeded).
    max_queued_tasks_per_account: int = Field(
        default=200_000, ge=1, description="tasks not yet finished across an account's jobs"
    )
    max_open_jobs_per_account: int = Field(
        default=2_000, ge=1, description="jobs not yet terminal (planning, queued, running)"
    )

    # Planning and retention (docs/llms-full.md, "Lifecycle" and "Retention").
    planning_inline_tasks: int = Field(
        default=1000, ge=0, description="jobs with more tasks answer 'planning' at once"
    )
    retention_days: float = Field(
        default=30.0, gt=0, description="finished jobs (tasks, results, events) kept this long"
    )
    retention_sweep_s: float = Field(
        default=3600.0, ge=1, description="how often each API replica runs the retention sweep"
    )

    # Job callbacks (docs/llms-full.md, "Callbacks"; computalot.callbacks).
    callback_allow_private: bool = Field(
        default=False, description="allow loopback and private callback targets (never link-local)"
    )
    callback_allow_networks: list[str] = Field(
        default_factory=list,
        description="JSON list of CIDRs allowed as callback targets although private",
    )
    callback_retry_s: str = Field(
        default="10,30,90,180,300",
        description="seconds before each retry of a failed callback (commas); tries = n + 1",
    )
    callback_timeout_s: float = Field(default=10.0, gt=0, le=60, description="per attempt")
    callback_poll_s: float = Field(
        default=2.0, gt=0, le=60, description="how often each API replica looks for due callbacks"
    )

    @field_validator("callback_allow_networks")
    @classmethod
    def _check_callback_networks(cls, value: list[str]) -> list[str]:
        for net in value:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ValueError(f"{net!r} is not a CIDR network: {exc}") from None
        return value

    @field_validator("callback_retry_s")
    @classmethod
    def _check_callback_retry(cls, value: str) -> str:
        try:
            delays = [float(part) for part in value.split(",")]
        except ValueError:
            raise ValueError("must be seconds separated by commas, e.g. 10,30,90") from None
        if not delays or len(delays) > 20 or any(not 0 < d <= 86400 for d in delays):
            raise ValueError("1 to 20 delays, each between 0 and 86400 seconds (exclusive of 0)")
        return value

    @property
    def callback_retry_delays(self) -> tuple[float, ...]:
        """Seconds to wait before each retry of a failed callback (``callback_retry_s``)."""
        return tuple(float(part) for part in self.callback_retry_s.split(","))

    # Auth.
    session_ttl_s: int = Field(default=24 * 3600, ge=60)
    challenge_ttl_s: int = Field(default=300, ge=10)

    # Engine.
    max_inflight_tasks: int = Field(
        default=0, ge=0, description="most Ray tasks in flight at once; 0 = 4 x cluster CPUs + 32"
    )
    dispatch_interval_s: float = Field(default=0.5, gt=0, le=60)
    kill_grace_s: float = Field(default=5.0, ge=0, le=300)
    worker_lost_retries: int = Field(
        default=2, ge=0, le=10, description="extra attempts after infrastructure loss"
    )
    node_wait_s: float = Field(
        default=60.0,
        ge=0,
        le=86400,
        description="seconds a launched task waits for an alive node that offers its "
        "requirements before it fails (node_lost / unsatisfiable_requirements)",
    )

    # Task sandbox and per-task limits (docs/sandbox.md).
    sandbox: Literal["bwrap", "none"] = Field(
        default="bwrap", description="bwrap: every runner confined; none: unconfined (warned)"
    )
    warm_python: bool = Field(
        default=True,
        description="start python3 script/-m runners forked from a warm interpreter "
        "(in the task's sandbox too; manifest runtime.warm_python: false opts a revision out)",
    )
    sandbox_uid: int = Field(default=65534, ge=1, description="host uid tasks run as (root only)")
    sandbox_gid: int = Field(default=65534, ge=1)
    sandbox_shared_dirs: list[Path] = Field(
        default_factory=list,
        description="host directories every task sees read-write (shared by all tenants)",
    )
    task_memory_mb: int = Field(default=4096, ge=16, description="per task, unless requested")
    task_memory_ceiling_mb: int = Field(
        default=0, ge=0, description="most requirements.memory_mb may ask; 0 = the node's"
    )
    task_max_processes: int = Field(default=1024, ge=8, description="processes and threads")
    task_max_open_files: int = Field(default=4096, ge=64)
    task_cpu_time_s: int = Field(default=86400, ge=0, description="per process; 0 = no limit")
    task_disk_mb: int = Field(default=10240, ge=16, description="the task's directory")
    task_disk_ceiling_mb: int = Field(
        default=0, ge=0, description="most requirements.storage_gb may ask; 0 = no ceiling"
    )

    # Prices and holds (docs/operating.md, "Prices"; computalot.billing.prices).
    prices: str | None = Field(
        default=None,
        description="price table: JSON text, or the path of a .json or .toml file; "
        "unset = the documented defaults",
    )
    billing_exempt_admins: bool = Field(
        default=False, description="admin accounts' holds never refuse a submit"
    )
    admin_starting_credit_usd: Decimal = Field(
        default=Decimal(1_000_000),
        ge=0,
        lt=Decimal(10**12),
        description="credit granted to the first admin when the platform creates it",
    )

    @field_validator("prices")
    @classmethod
    def _check_prices(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        check_price_table(read_price_table(value))
        return value

    # x402 top-ups (docs/llms-full.md, "Billing"): USDC on Base Sepolia by default.
    x402_network: str = Field(
        default="eip155:84532", description="CAIP-2 chain of payments (Base mainnet: eip155:8453)"
    )
    x402_asset: str = Field(
        default="0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        description="ERC-20 token with EIP-3009 (USDC on Base Sepolia)",
    )
    x402_asset_decimals: int = Field(default=6, ge=0, le=18)
    x402_asset_name: str = Field(default="USDC", description="the token's EIP-712 domain name")
    x402_asset_version: str = Field(default="2", description="the token's EIP-712 version")
    x402_pay_to: str = Field(
        default=X402_PLACEHOLDER_PAY_TO,
        description="address payments go to; set it to the operator's wallet",
    )
    x402_facilitator_url: str | None = Field(
        default=None, description="remote facilitator (/verify, /settle); unset = built-in"
    )
    x402_max_timeout_s: int = Field(
        default=300, ge=10, le=86400, description="validity a client gives its authorisation"
    )
    quote_ttl_s: int = Field(default=900, ge=10, description="how long a quote can be paid")

    @field_validator("x402_asset", "x402_pay_to")
    @classmethod
    def _check_evm_address(cls, value: str) -> str:
        if not re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
            raise ValueError("must be a 0x-prefixed 20-byte hex address")
        return value

    @field_validator("x402_network")
    @classmethod
    def _check_network(cls, value: str) -> str:
        if not re.fullmatch(r"eip155:[1-9][0-9]*", value):
            raise ValueError("must be a CAIP-2 EVM chain such as eip155:84532")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_db_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if not (
            value.startswith("sqlite+aiosqlite://") or value.startswith("postgresql+asyncpg://")
        ):
            raise ValueError("use sqlite+aiosqlite:///path or postgresql+asyncpg://user@host/db")
        return value

    @field_validator("artifact_store")
    @classmethod
    def _check_artifact_store(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("s3://", "file:///", "/")):
            raise ValueError("use s3://bucket/prefix, an absolute directory, or leave it empty")
        if value.startswith("s3://") and not value[5:].split("/", 1)[0]:
            raise ValueError("s3:// needs a bucket: s3://bucket/prefix")
        return value

    @field_validator("sandbox_shared_dirs")
    @classmethod
    def _check_shared_dirs(cls, value: list[Path]) -> list[Path]:
        for path in value:
            if not path.is_absolute():
                raise ValueError(f"{str(path)!r} must be an absolute path")
        return value

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        if value in ("localhost", "0.0.0.0", "::"):
            return value
        try:
            ipaddress.ip_address(value)
        except ValueError as exc:
            raise ValueError("must be an IP address or 'localhost'") from exc
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'computalot.db'}"

    @property
    def resolved_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def binds_loopback_only(self) -> bool:
        """True when only this machine can reach the API, so a loopback peer is truly local."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment; raise :class:`ConfigError` naming the bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = "COMPUTALOT_" + "_".join(str(p) for p in err["loc"]).upper()
            problems.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings (cached; tests call ``get_settings.cache_clear()``)."""
    return load_settings()


#: Settings that carry credentials (a PostgreSQL URL may hold a password). They never travel
#: to another process as environment variables, where anything that can read
#: ``/proc/<pid>/environ`` sees them: the platform hands them to its actors and API replicas as
#: a constructor argument (:class:`Secrets`). Every ``SecretStr`` field belongs here.
SECRET_SETTINGS = ("database_url", "metrics_token", "task_token_secret")
SECRET_ENV = tuple(f"COMPUTALOT_{name.upper()}" for name in SECRET_SETTINGS)


def is_secret_env(name: str) -> bool:
    """True for a variable that sets a secret setting (names are case-insensitive)."""
    return name.upper() in SECRET_ENV


@dataclass(frozen=True, repr=False)
class Secrets:
    """The secret settings of the process that starts the platform, handed to the processes it
    starts (dispatcher, event hub, API replicas) as an argument; its repr shows no value."""

    database_url: str
    metrics_token: str | None = None
    task_token_secret: str | None = None

    @classmethod
    def of(cls, settings: Settings) -> Secrets:
        token = settings.metrics_token
        task_secret = settings.task_token_secret
        return cls(
            database_url=settings.resolved_database_url,
            metrics_token=token.get_secret_value() if token is not None else None,
            task_token_secret=task_secret.get_secret_value() if task_secret is not None else None,
        )

    def overrides(self) -> dict[str, Any]:
        return {
            "database_url": self.database_url,
            "metrics_token": self.metrics_token,
            "task_token_secret": self.task_token_secret,
        }

    def __repr__(self) -> str:
        return "Secrets(<hidden>)"

    __str__ = __repr__


def load_settings_with(secrets: Secrets | None) -> Settings:
    """Settings from the environment plus ``secrets`` (the way the platform's actors and
    replicas build theirs); without ``secrets``, from the environment alone."""
    return load_settings(**secrets.overrides()) if secrets is not None else load_settings()


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``COMPUTALOT_*`` variables that reproduce ``settings`` in another process, except the
    secret ones (:data:`SECRET_SETTINGS`: they travel as :class:`Secrets`)."""
    env = {
        k: v for k, v in os.environ.items() if k.startswith("COMPUTALOT_") and not is_secret_env(k)
    }
    env["COMPUTALOT_DATA_DIR"] = str(settings.data_dir.resolve())
    env["COMPUTALOT_HOST"] = settings.host
    env["COMPUTALOT_PORT"] = str(settings.port)
    return env


def drop_secret_env(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Remove the secret ``COMPUTALOT_*`` variables from ``environ`` (default ``os.environ``,
    whose copy every process this one starts inherits); return the names removed."""
    target = os.environ if environ is None else environ
    names = [name for name in target if is_secret_env(name)]
    for name in names:
        del target[name]
    return names
