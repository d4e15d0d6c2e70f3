"""tasks: claim index (job_id, status, index)

The dispatcher claims a job's next queued tasks in index order; with (job_id, status) alone
the database walked every finished task of the job before the queued ones, so a claim late in a
100,000-task job cost a scan of the whole job.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 12:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_job_status")
        batch_op.create_index(
            "ix_tasks_job_status_index", ["job_id", "status", "index"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_job_status_index")
        batch_op.create_index("ix_tasks_job_status", ["job_id", "status"], unique=False)
