"""workflows: callback delivery state, task checkpoints, project KV, node readiness, stream

* ``jobs.callback_state`` / ``callback_attempts`` / ``callback_next_at``: the signed callback
  of a finished job is delivered from the store, so retries survive a restart.
* ``tasks.checkpoint``: where the task's latest ``COMPUTALOT_CHECKPOINT_DIR`` lives in the
  artifact store.
* ``project_kv``: a project's versioned JSON key-value entries.
* ``project_nodes``: per node and revision, how far init (or a first job) prepared it.
* ``project_events``: the project stream (push, init, node, status, kv).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 20:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

#: SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit sequence.
AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("callback_state", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("callback_attempts", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("callback_next_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            "ix_jobs_callback", ["callback_state", "callback_next_at"], unique=False
        )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("checkpoint", sa.JSON(), nullable=True))
    op.create_table(
        "project_events",
        sa.Column("id", AUTO_ID, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_project_events_project_id", "project_events", ["project_id", "id"])
    op.create_table(
        "project_kv",
        sa.Column(
            "project_id",
            sa.String(length=40),
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.String(length=512), primary_key=True),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "project_nodes",
        sa.Column(
            "project_id",
            sa.String(length=40),
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("revision_id", sa.String(length=40), primary_key=True),
        sa.Column("node_id", sa.String(length=64), primary_key=True),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("node", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("warmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("validation", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("project_nodes")
    op.drop_table("project_kv")
    op.drop_index("ix_project_events_project_id", table_name="project_events")
    op.drop_table("project_events")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("checkpoint")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_callback")
        batch_op.drop_column("callback_next_at")
        batch_op.drop_column("callback_attempts")
        batch_op.drop_column("callback_state")
