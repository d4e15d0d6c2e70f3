"""jobs: planning columns (rows written, planner lease, plan input) and a finished_at index

A big fan-out is answered at once in ``planning`` while its task rows are written off the
request; these columns let another planner resume a job whose planner died. ``finished_at``
is indexed for the retention sweep, which looks for jobs that ended before a cutoff.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-12 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("planned_tasks", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("planner_id", sa.String(length=40), nullable=True))
        batch_op.add_column(
            sa.Column("planner_lease_until", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("plan_input", sa.JSON(), nullable=True))
        batch_op.create_index("ix_jobs_finished_at", ["finished_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_finished_at")
        batch_op.drop_column("plan_input")
        batch_op.drop_column("planner_lease_until")
        batch_op.drop_column("planner_id")
        batch_op.drop_column("planned_tasks")
