"""Refunds: each refund of a payment, and what of each invoice's payments is refunded

``refunds.artifact_id`` repeats the payment's artifact (not a foreign key: a payment
names its artifact, and the refund its payment). ``invoices.refunded_minor`` starts at 0
for every invoice: nothing was refunded before this revision. Additive: older processes
neither read the new table nor write the new column, whose server default fills it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-09 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import partnerpay.db

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "refunds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("artifact_id", sa.Uuid(), nullable=False),
        sa.Column("artifact_type", sa.String(length=32), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("refund_minor", sa.BigInteger(), nullable=False),
        sa.Column("surcharge_minor", sa.BigInteger(), nullable=False),
        sa.Column("refund_reason", sa.String(length=500), nullable=True),
        sa.Column("firm_notes", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("gateway", sa.String(length=16), nullable=False),
        sa.Column("processor_reference", sa.String(length=255), nullable=True),
        sa.Column("created_at", partnerpay.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", partnerpay.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("payment_id", "idempotency_key"),
    )
    op.create_index("ix_refunds_payment_id", "refunds", ["payment_id"])
    op.create_index("ix_refunds_artifact_id", "refunds", ["artifact_id"])
    op.create_index("ix_refunds_status", "refunds", ["status"])
    op.create_index("ix_refunds_processor_reference", "refunds", ["processor_reference"])
    # Plain ADD COLUMN, which SQLite has: a batch rebuild would drop invoices, which
    # payments reference.
    op.add_column(
        "invoices",
        sa.Column("refunded_minor", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("invoices", "refunded_minor")
    op.drop_table("refunds")
