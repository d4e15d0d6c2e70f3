"""billing: holds, billed seconds per task, ledger indexes

A submit places a hold on the account's balance (``holds``); the job's terminal state settles it
to the task-seconds its attempts ran (``tasks.billed_s``, every attempt added) as one ledger
debit. The ledger gets the indexes its balance sum and its newest-first pages read.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 15:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(precision=18, scale=6)


def upgrade() -> None:
    op.create_table(
        "holds",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount_usd", MONEY, nullable=False),
        sa.Column("usd_per_hour", MONEY, nullable=False),
        sa.Column("billed_s", sa.Float(), nullable=True),
        sa.Column("settled_usd", MONEY, nullable=True),
        sa.Column("ledger_id", sa.String(length=40), nullable=True),
        sa.Column("memo", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", name="uq_holds_job"),
    )
    op.create_index(
        "ix_holds_account_status", "holds", ["account_id", "status", "amount_usd"], unique=False
    )
    op.create_index("ix_holds_account_created", "holds", ["account_id", "created_at", "id"])
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("billed_s", sa.Float(), nullable=False, server_default="0"))
    with op.batch_alter_table("ledger", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ledger_account_created", ["account_id", "created_at", "id"], unique=False
        )
        batch_op.create_index("ix_ledger_account_amount", ["account_id", "amount_usd"])


def downgrade() -> None:
    with op.batch_alter_table("ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_account_amount")
        batch_op.drop_index("ix_ledger_account_created")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("billed_s")
    op.drop_index("ix_holds_account_created", table_name="holds")
    op.drop_index("ix_holds_account_status", table_name="holds")
    op.drop_table("holds")
