"""revisions: the blob key of the pushed tarball in the artifact store (filled in by the task-artifacts work)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 15:20:00
"""

from collections.abc import Sequence

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
