"""Gateways: which gateway took a payment and its id there, processor accounts for
settlement accounts, and the processor notifications already handled

``payments.gateway`` is ``sandbox`` for every payment the page took so far (the only
gateway there was) and stays empty for payments recorded as received elsewhere.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import partnerpay.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN, which SQLite has: a batch rebuild would drop settlement_accounts,
    # which invoices reference.
    op.add_column("payments", sa.Column("gateway", sa.String(length=16), nullable=True))
    op.add_column(
        "payments", sa.Column("processor_reference", sa.String(length=255), nullable=True)
    )
    op.add_column("payments", sa.Column("processor_account", sa.String(length=255), nullable=True))
    op.create_index("ix_payments_processor_reference", "payments", ["processor_reference"])
    op.execute("UPDATE payments SET gateway = 'sandbox' WHERE method <> 'External'")
    op.add_column(
        "settlement_accounts",
        sa.Column("processor_account", sa.String(length=255), nullable=True),
    )
    op.create_table(
        "processor_events",
        sa.Column("gateway", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("received_at", partnerpay.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("gateway", "event_id"),
    )


def downgrade() -> None:
    op.drop_table("processor_events")
    op.drop_column("settlement_accounts", "processor_account")
    op.drop_index("ix_payments_processor_reference", "payments")
    for column in ("processor_account", "processor_reference", "gateway"):
        op.drop_column("payments", column)
