"""revisions.tarball_key: the blob key of the pushed tarball in the artifact store

A revision's tree lives in a directory of the node that received the push; its tarball is also
kept in the artifact store (content-addressed), so a node that lacks the directory (a head
restarted on a fresh disk, a cluster whose nodes share S3 and no disk) restores it from there.
Revisions pushed before have no key (null) and are served from their directory as before.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 15:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("revisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tarball_key", sa.String(length=1024), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("revisions", schema=None) as batch_op:
        batch_op.drop_column("tarball_key")
