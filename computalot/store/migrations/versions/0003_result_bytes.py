"""tasks.result_bytes, jobs.result_bytes: results measured, so a job's total can be capped

Each stored result's size (UTF-8 bytes of its JSON text) and each job's running total, so the
dispatcher can hold a job under ``max_job_result_bytes`` and ``GET /results`` can page by bytes
without reading results to measure them. Jobs that finished before are given their total from
their completed tasks' results; those tasks' own ``result_bytes`` stays null, which marks a
result that was stored before results were checked at the worker (it is decoded when read,
never passed through as raw text).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("result_bytes", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("result_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
    size = (
        "octet_length(tasks.result::text)"
        if op.get_bind().dialect.name == "postgresql"
        else "length(CAST(tasks.result AS BLOB))"
    )
    op.execute(
        "UPDATE jobs SET result_bytes = coalesce((SELECT sum("
        + size
        + ") FROM tasks WHERE tasks.job_id = jobs.id AND tasks.status = 'completed'"
        " AND tasks.result IS NOT NULL), 0)"
    )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("result_bytes")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("result_bytes")
