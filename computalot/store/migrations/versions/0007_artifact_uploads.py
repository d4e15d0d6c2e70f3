"""artifacts: content-addressed blobs, multipart and direct uploads, artifact listing indexes

``blobs`` keeps each sha256's bytes once (its key in the artifact store and how many artifact
rows reference it); ``artifact_uploads`` and ``artifact_upload_parts`` hold uploads in progress
(resumable multipart, and direct uploads through a signed URL).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 15:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("storage_key", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("refs", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_table(
        "artifact_uploads",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("artifact_id", sa.String(length=40), nullable=True),
        sa.Column("filename", sa.String(length=1024), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("part_size", sa.BigInteger(), nullable=False),
        sa.Column("part_count", sa.Integer(), nullable=False),
        sa.Column("storage_key", sa.String(length=1024), nullable=True),
        sa.Column("backend_id", sa.String(length=1024), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("artifact_uploads", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_artifact_uploads_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_artifact_uploads_expires_at"), ["expires_at"], unique=False
        )
    op.create_table(
        "artifact_upload_parts",
        sa.Column("upload_id", sa.String(length=40), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["upload_id"], ["artifact_uploads.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("upload_id", "n"),
    )
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_artifacts_account_created", ["account_id", "created_at", "id"], unique=False
        )
        batch_op.create_index("ix_artifacts_job_id", ["job_id"], unique=False)
        batch_op.create_index("ix_artifacts_sha256", ["sha256"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_index("ix_artifacts_sha256")
        batch_op.drop_index("ix_artifacts_job_id")
        batch_op.drop_index("ix_artifacts_account_created")
    op.drop_table("artifact_upload_parts")
    with op.batch_alter_table("artifact_uploads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_artifact_uploads_expires_at"))
        batch_op.drop_index(batch_op.f("ix_artifact_uploads_account_id"))
    op.drop_table("artifact_uploads")
    op.drop_table("blobs")
