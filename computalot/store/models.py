"""SQLAlchemy models: every table the platform reads or writes (``docs/llms-full.md``).

The store is the source of truth; actors keep caches only. Every account-owned row carries
``account_id`` so the query layer can scope by it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use computalot.timeutil.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Money = Numeric(18, 6)
#: SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit sequence.
AutoId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, Any: JSON}


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    wallet_address: Mapped[str | None] = mapped_column(String(42), nullable=True)
    chain: Mapped[str | None] = mapped_column(String(32), nullable=True)
    callback_secret: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    __table_args__ = (UniqueConstraint("chain", "wallet_address", name="uq_accounts_wallet"),)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class WalletSession(Base):
    __tablename__ = "wallet_sessions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


class WalletChallenge(Base):
    __tablename__ = "wallet_challenges"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    wallet_address: Mapped[str] = mapped_column(String(42))
    chain: Mapped[str] = mapped_column(String(32))
    nonce: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class WalletWhitelist(Base):
    __tablename__ = "wallet_whitelist"
    chain: Mapped[str] = mapped_column(String(32), primary_key=True)
    wallet_address: Mapped[str] = mapped_column(String(42), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Feedback(Base):
    __tablename__ = "feedback"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    account_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    remote_dir: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    active_revision_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    warm_state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    __table_args__ = (UniqueConstraint("account_id", "name", name="uq_projects_account_name"),)


class Revision(Base):
    __tablename__ = "revisions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    account_id: Mapped[str] = mapped_column(String(40), index=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    files: Mapped[list[Any]] = mapped_column(JSON)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    runtime_kind: Mapped[str] = mapped_column(String(16))
    warnings: Mapped[list[Any]] = mapped_column(JSON)
    path: Mapped[str] = mapped_column(String(1024))
    #: The pushed tarball's blob key in the artifact store (null for revisions pushed before).
    tarball_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    pushed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    __table_args__ = (
        UniqueConstraint("project_id", "content_hash", name="uq_revisions_project_hash"),
    )


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    recipe: Mapped[str | None] = mapped_column(String(64), nullable=True)
    project_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    project_name: Mapped[str | None] = mapped_column(String(63), nullable=True)
    revision_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(8))
    tags: Mapped[list[Any]] = mapped_column(JSON)
    depends_on: Mapped[list[Any]] = mapped_column(JSON)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    timeout_s: Mapped[int] = mapped_column(Integer)
    max_retries: Mapped[int] = mapped_column(Integer)
    requirements: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    resources: Mapped[dict[str, Any]] = mapped_column(JSON)
    n_total: Mapped[int] = mapped_column(Integer, default=0)
    n_queued: Mapped[int] = mapped_column(Integer, default=0)
    n_running: Mapped[int] = mapped_column(Integer, default=0)
    n_completed: Mapped[int] = mapped_column(Integer, default=0)
    n_failed: Mapped[int] = mapped_column(Integer, default=0)
    n_cancelled: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    recommended_action: Mapped[str | None] = mapped_column(Text, nullable=True)
    warnings: Mapped[list[Any]] = mapped_column(JSON)
    # Deferred: up to one entry per element (100,000); only GET /results reads it.
    aggregate_result: Mapped[Any] = mapped_column(JSON, nullable=True, deferred=True)
    #: Bytes of every stored result of the job (its tasks' ``result_bytes``), held under
    #: ``max_job_result_bytes``; moved in the transaction that stores each result.
    result_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    held_usd: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    charged_usd: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    meta: Mapped[Any] = mapped_column(JSON, nullable=True)
    variant: Mapped[Any] = mapped_column(JSON, nullable=True)
    callback_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    #: Callback delivery (``computalot.callbacks``): ``pending`` from submit (a job with a
    #: ``callback_url``) until ``delivered`` or ``failed`` (tries used up); the sender claims a
    #: terminal pending job by moving ``callback_next_at`` forward (compare-and-set).
    callback_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    callback_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    callback_next_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    #: While ``planning``: task rows written so far (rows 0..planned_tasks-1 exist), which
    #: planner writes the rest and until when its lease holds (``computalot.jobs.planning``).
    planned_tasks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    planner_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    planner_lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    #: While ``planning``: the request's fan-out (payload, fan_out, batch_size), so another
    #: planner can resume; cleared when the job is queued. Deferred: only planners read it.
    plan_input: Mapped[Any] = mapped_column(JSON, nullable=True, deferred=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    __table_args__ = (
        Index("ix_jobs_account_created", "account_id", "created_at", "id"),
        Index("ix_jobs_account_status", "account_id", "status"),
        Index("ix_jobs_status", "status"),
        Index("ix_jobs_finished_at", "finished_at"),
        Index("ix_jobs_callback", "callback_state", "callback_next_at"),
    )


class Task(Base):
    __tablename__ = "tasks"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    account_id: Mapped[str] = mapped_column(String(40))
    index: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    lost_attempts: Mapped[int] = mapped_column(Integer, default=0)
    element_start: Mapped[int] = mapped_column(Integer)
    element_count: Mapped[int] = mapped_column(Integer)
    batched: Mapped[bool] = mapped_column(Boolean, default=False)
    item: Mapped[Any] = mapped_column(JSON, nullable=True)
    run_epoch: Mapped[str | None] = mapped_column(String(40), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    stdout: Mapped[str | None] = mapped_column(Text, nullable=True)
    stderr: Mapped[str | None] = mapped_column(Text, nullable=True)
    output_tail: Mapped[str | None] = mapped_column(Text, nullable=True)
    output_attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latest_progress: Mapped[Any] = mapped_column(JSON, nullable=True)
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    #: UTF-8 bytes of ``result`` as stored; null for rows stored before results were measured
    #: (those are decoded when read, never passed through as raw text).
    result_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    result_quality: Mapped[float | None] = mapped_column(Float, nullable=True)
    result_warnings: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    artifacts: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    #: Seconds every attempt of the task ran, added as each attempt ends (what billing charges).
    billed_s: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    #: The latest saved ``COMPUTALOT_CHECKPOINT_DIR`` of the task (``engine.checkpoints``):
    #: ``{"key", "size", "sha256", "attempt", "saved_at"}`` in the artifact store, or null.
    checkpoint: Mapped[Any] = mapped_column(JSON, nullable=True)
    #: sha256 of what the task runs, on tasks of jobs with ``cache`` that run: a completed one
    #: is the result cache's entry for it (``computalot.jobs.result_cache``).
    cache_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The task whose result this one was answered from (``cache``), or null.
    cached_from: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: The Ray node that ran the task's latest recorded attempt (shown as a public name:
    #: ``engine.placement.node_name``), or null.
    node_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    __table_args__ = (
        Index("ix_tasks_job_index", "job_id", "index"),
        Index("ix_tasks_job_status_index", "job_id", "status", "index"),
        Index("ix_tasks_status", "status"),
        Index(
            "ix_tasks_cache",
            "account_id",
            "cache_key",
            sqlite_where=text("cache_key IS NOT NULL"),
            postgresql_where=text("cache_key IS NOT NULL"),
        ),
    )


class Event(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(40))
    account_id: Mapped[str] = mapped_column(String(40))
    event: Mapped[str] = mapped_column(String(16))
    data: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    __table_args__ = (Index("ix_events_job_id", "job_id", "id"),)


class ProjectEvent(Base):
    """One event of a project's stream (``GET /projects/:name/stream``): push, init, node,
    status, kv. ``id`` orders them and is the SSE ``id:`` (resume with ``Last-Event-ID``)."""

    __tablename__ = "project_events"
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(String(40))
    account_id: Mapped[str] = mapped_column(String(40))
    event: Mapped[str] = mapped_column(String(16))
    data: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    __table_args__ = (Index("ix_project_events_project_id", "project_id", "id"),)


class ProjectKV(Base):
    """A project's key-value entry: a JSON value with a version bumped by every write."""

    __tablename__ = "project_kv"
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40))
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ProjectNode(Base):
    """How far one node prepared one revision of a project (``POST /projects/:name/init``, or
    the first job there). ``node_id`` is Ray's (internal, never shown); ``node`` the public
    name (``node-1``…)."""

    __tablename__ = "project_nodes"
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    revision_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40))
    node: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))  # initializing | ready | failed
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    warmed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    validation: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    account_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Artifact(Base):
    __tablename__ = "artifacts"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40), index=True)
    job_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    filename: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    content_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    storage_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    __table_args__ = (
        Index("ix_artifacts_account_created", "account_id", "created_at", "id"),
        Index("ix_artifacts_job_id", "job_id"),
        Index("ix_artifacts_sha256", "sha256"),
    )


class Blob(Base):
    """Bytes in the artifact store, once per sha256: where they are and how many artifact rows
    reference them (the bytes go when ``refs`` reaches 0)."""

    __tablename__ = "blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    storage_key: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    refs: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ArtifactUpload(Base):
    """An upload in progress: ``multipart`` (``upl_`` id, parts in ``artifact_upload_parts``)
    or ``direct`` (a signed single-use URL for the pending artifact ``artifact_id``)."""

    __tablename__ = "artifact_uploads"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    artifact_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    filename: Mapped[str] = mapped_column(String(1024))
    content_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    part_size: Mapped[int] = mapped_column(BigInteger)
    part_count: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    backend_id: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class ArtifactUploadPart(Base):
    __tablename__ = "artifact_upload_parts"
    upload_id: Mapped[str] = mapped_column(
        ForeignKey("artifact_uploads.id", ondelete="CASCADE"), primary_key=True
    )
    n: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class LedgerEntry(Base):
    __tablename__ = "ledger"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    amount_usd: Mapped[Decimal] = mapped_column(Money)
    job_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    memo: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    __table_args__ = (
        Index("ix_ledger_account_created", "account_id", "created_at", "id"),
        Index("ix_ledger_account_amount", "account_id", "amount_usd"),
    )


class Hold(Base):
    """Money set aside for a job's worst case until it ends (``computalot.billing.holds``):
    ``open`` while the job runs, then ``settled`` to what it used (``settled_usd``, one ledger
    debit ``ledger_id``), the rest released."""

    __tablename__ = "holds"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40))
    job_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    amount_usd: Mapped[Decimal] = mapped_column(Money)
    usd_per_hour: Mapped[Decimal] = mapped_column(Money)
    billed_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    settled_usd: Mapped[Decimal | None] = mapped_column(Money, nullable=True)
    ledger_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    memo: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    settled_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    __table_args__ = (
        UniqueConstraint("job_id", name="uq_holds_job"),
        Index("ix_holds_account_status", "account_id", "status", "amount_usd"),
        Index("ix_holds_account_created", "account_id", "created_at", "id"),
    )


class Quote(Base):
    """A price to pay (a top-up, a submit's or an init's shortfall), payable once over x402
    until ``expires_at`` (docs/llms-full.md, "Billing")."""

    __tablename__ = "quotes"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    amount_usd: Mapped[Decimal] = mapped_column(Money)
    #: The price in the asset's smallest unit (USDC: 6 decimals), as x402 writes amounts.
    amount_atomic: Mapped[str] = mapped_column(String(80))
    network: Mapped[str] = mapped_column(String(64))
    asset: Mapped[str] = mapped_column(String(42))
    pay_to: Mapped[str] = mapped_column(String(42))
    memo: Mapped[str | None] = mapped_column(Text, nullable=True)
    payer: Mapped[str | None] = mapped_column(String(42), nullable=True)
    ledger_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    paid_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    __table_args__ = (Index("ix_quotes_account_created", "account_id", "created_at", "id"),)


class X402Payment(Base):
    """Every accepted x402 authorisation. The unique keys are what make a replay impossible,
    even for two requests racing with the same payload: an EIP-3009 nonce is spent once per
    (chain, token, payer), and a quote is paid once."""

    __tablename__ = "x402_payments"
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    quote_id: Mapped[str] = mapped_column(String(40))
    account_id: Mapped[str] = mapped_column(String(40))
    network: Mapped[str] = mapped_column(String(64))
    asset: Mapped[str] = mapped_column(String(42))
    payer: Mapped[str] = mapped_column(String(42))
    pay_to: Mapped[str] = mapped_column(String(42))
    nonce: Mapped[str] = mapped_column(String(66))
    value_atomic: Mapped[str] = mapped_column(String(80))
    valid_before: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[str] = mapped_column(Text)
    transaction: Mapped[str | None] = mapped_column(String(100), nullable=True)
    #: ``settled`` (credited: ``ledger_id`` is the credit) or, while a remote facilitator
    #: settles it on-chain, ``settling`` (no credit yet).
    status: Mapped[str] = mapped_column(String(16))
    ledger_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    __table_args__ = (
        UniqueConstraint("network", "asset", "payer", "nonce", name="uq_x402_payments_nonce"),
        UniqueConstraint("quote_id", name="uq_x402_payments_quote"),
    )
