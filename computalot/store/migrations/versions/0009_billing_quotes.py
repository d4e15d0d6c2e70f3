"""billing: quotes and x402 payments

A quote is a price payable once over x402 until it expires. ``x402_payments`` keeps every
accepted EIP-3009 authorisation; its unique keys make a replayed authorisation (the same nonce
from the same payer on the same token and chain) and a second payment of one quote fail in the
database, whatever the race between requests.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 15:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "quotes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount_usd", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("amount_atomic", sa.String(length=80), nullable=False),
        sa.Column("network", sa.String(length=64), nullable=False),
        sa.Column("asset", sa.String(length=42), nullable=False),
        sa.Column("pay_to", sa.String(length=42), nullable=False),
        sa.Column("memo", sa.Text(), nullable=True),
        sa.Column("payer", sa.String(length=42), nullable=True),
        sa.Column("ledger_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("quotes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_quotes_account_created", ["account_id", "created_at", "id"], unique=False
        )
    op.create_table(
        "x402_payments",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("quote_id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("network", sa.String(length=64), nullable=False),
        sa.Column("asset", sa.String(length=42), nullable=False),
        sa.Column("payer", sa.String(length=42), nullable=False),
        sa.Column("pay_to", sa.String(length=42), nullable=False),
        sa.Column("nonce", sa.String(length=66), nullable=False),
        sa.Column("value_atomic", sa.String(length=80), nullable=False),
        sa.Column("valid_before", sa.BigInteger(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("transaction", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("ledger_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("network", "asset", "payer", "nonce", name="uq_x402_payments_nonce"),
        sa.UniqueConstraint("quote_id", name="uq_x402_payments_quote"),
    )


def downgrade() -> None:
    op.drop_table("x402_payments")
    with op.batch_alter_table("quotes", schema=None) as batch_op:
        batch_op.drop_index("ix_quotes_account_created")
    op.drop_table("quotes")
