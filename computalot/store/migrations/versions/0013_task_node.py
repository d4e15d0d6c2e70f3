"""task node: the Ray node that ran a task's latest recorded attempt

* ``tasks.node_id``: set as each attempt is recorded (``engine.settling``); the task object
  shows it as a public name (``node``: ``engine.placement.node_name``), never Ray's id nor an
  address (docs/llms-full.md, "Task object").

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 02:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("node_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("node_id")
