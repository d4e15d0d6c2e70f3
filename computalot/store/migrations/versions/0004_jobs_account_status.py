"""jobs: index (account_id, status) for the per-account quota check

Every submit counts the account's unfinished jobs and tasks (``jobs.quotas``); with only
(account_id, created_at, id) that count walked every job the account ever ran.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 09:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_account_status", ["account_id", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_account_status")
