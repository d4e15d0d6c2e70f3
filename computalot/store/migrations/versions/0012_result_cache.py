"""result cache: a task's cache key and the task a cached one was answered from

* ``tasks.cache_key``: the sha256 of what a task of a cache-enabled job runs
  (``computalot.jobs.result_cache``); set only on tasks that run, so a completed one is the
  cache entry for its key.
* ``tasks.cached_from``: the task whose result a cached task was answered from.
* ``ix_tasks_cache``: the lookup of entries by account and key; partial (``cache_key`` not
  null), so tasks of jobs without ``cache`` add nothing to it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HAS_KEY = sa.text("cache_key IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cache_key", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("cached_from", sa.String(length=40), nullable=True))
    op.create_index(
        "ix_tasks_cache",
        "tasks",
        ["account_id", "cache_key"],
        sqlite_where=HAS_KEY,
        postgresql_where=HAS_KEY,
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_cache", table_name="tasks")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("cached_from")
        batch_op.drop_column("cache_key")
