"""The ledger, firms' pricing and payouts

``ledger_entries`` is append-only; ``payout_entries`` says which payout paid each entry
out (an entry at most once: it is the primary key). ``payments.fee_minor`` is 0 for every
earlier payment (no pricing existed), and ``payments.settlement_account_id`` (the account
a payment was made to) is its invoice's. The ledger starts with the money already taken:
each successful payment taken through a gateway gets its ``payment`` and ``surcharge``
entries, and each refund done or under way its ``refund`` and ``refund_surcharge``
entries, so that balances include it; nothing was paid out before this revision.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 22:30:00
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import partnerpay.db

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payouts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("partner_id", sa.Uuid(), nullable=False),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("payout_reference", sa.String(length=18), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("exported_at", partnerpay.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("paid_at", partnerpay.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", partnerpay.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", partnerpay.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"]),
        sa.ForeignKeyConstraint(["firm_id"], ["firms.id"]),
        sa.ForeignKeyConstraint(["account_id"], ["settlement_accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("payout_reference"),
    )
    op.create_index("ix_payouts_partner_created", "payouts", ["partner_id", "created_at"])
    op.create_index("ix_payouts_firm_created", "payouts", ["firm_id", "created_at"])
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=True),
        sa.Column("refund_id", sa.Uuid(), nullable=True),
        sa.Column("payout_id", sa.Uuid(), nullable=True),
        sa.Column("artifact_id", sa.Uuid(), nullable=True),
        sa.Column("artifact_type", sa.String(length=32), nullable=True),
        sa.Column("created_at", partnerpay.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["firm_id"], ["firms.id"]),
        sa.ForeignKeyConstraint(["account_id"], ["settlement_accounts.id"]),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"]),
        sa.ForeignKeyConstraint(["refund_id"], ["refunds.id"]),
        sa.ForeignKeyConstraint(["payout_id"], ["payouts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("account_id", "payment_id", "refund_id", "artifact_id"):
        op.create_index(f"ix_ledger_entries_{column}", "ledger_entries", [column])
    op.create_table(
        "payout_entries",
        sa.Column("entry_id", sa.Uuid(), nullable=False),
        sa.Column("payout_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["entry_id"], ["ledger_entries.id"]),
        sa.ForeignKeyConstraint(["payout_id"], ["payouts.id"]),
        sa.PrimaryKeyConstraint("entry_id"),
    )
    op.create_index("ix_payout_entries_payout_id", "payout_entries", ["payout_id"])
    op.create_table(
        "firm_pricing",
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("percent", sa.String(length=10), nullable=False),
        sa.Column("fixed_minor", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", partnerpay.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["firm_id"], ["firms.id"]),
        sa.PrimaryKeyConstraint("firm_id", "method"),
    )
    # Plain ADD COLUMN, which SQLite has: a batch rebuild would drop payments, which
    # refunds reference (so settlement_account_id is not a foreign key either).
    op.add_column(
        "payments", sa.Column("fee_minor", sa.BigInteger(), nullable=False, server_default="0")
    )
    op.add_column("payments", sa.Column("settlement_account_id", sa.Uuid(), nullable=True))
    op.execute(
        "UPDATE payments SET settlement_account_id = (SELECT i.settlement_account_id"
        " FROM invoices i WHERE i.id = payments.artifact_id)"
    )
    _record_money_already_taken()


_ENTRIES = sa.table(
    "ledger_entries",
    *(
        sa.column(name, type_)
        for name, type_ in (
            ("id", sa.Uuid()),
            ("firm_id", sa.Uuid()),
            ("account_id", sa.Uuid()),
            ("currency", sa.String()),
            ("kind", sa.String()),
            ("amount_minor", sa.BigInteger()),
            ("payment_id", sa.Uuid()),
            ("refund_id", sa.Uuid()),
            ("artifact_id", sa.Uuid()),
            ("artifact_type", sa.String()),
            ("created_at", partnerpay.db.UTCDateTime(timezone=True)),
        )
    ),
)

_TAKEN = sa.text(
    "SELECT p.id, p.artifact_id, p.artifact_type, p.amount_minor, p.surcharge_minor,"
    " p.currency, i.firm_id, i.settlement_account_id, o.id AS office_id"
    " FROM payments p JOIN invoices i ON i.id = p.artifact_id"
    " LEFT JOIN settlement_accounts o ON o.firm_id = i.firm_id AND o.account_type = 'Office'"
    " WHERE p.status = 'Successful' AND p.gateway IS NOT NULL"
).columns(
    id=sa.Uuid(),
    artifact_id=sa.Uuid(),
    firm_id=sa.Uuid(),
    settlement_account_id=sa.Uuid(),
    office_id=sa.Uuid(),
)

_REFUNDED = sa.text(
    "SELECT r.id, r.payment_id, r.refund_minor, r.surcharge_minor FROM refunds r"
    " WHERE r.status IN ('Processing', 'Complete')"
).columns(id=sa.Uuid(), payment_id=sa.Uuid())


def _record_money_already_taken() -> None:
    connection = op.get_bind()
    now = datetime.now(UTC)
    rows: list[dict[str, object]] = []
    taken: dict[uuid.UUID, tuple[sa.RowMapping, uuid.UUID]] = {}
    for payment in connection.execute(_TAKEN).mappings():
        surcharge_account = payment["office_id"] or payment["settlement_account_id"]
        taken[payment["id"]] = (payment, surcharge_account)
        rows.append(
            _entry(
                payment,
                payment["settlement_account_id"],
                "payment",
                payment["amount_minor"],
                None,
                now,
            )
        )
        if payment["surcharge_minor"]:
            rows.append(
                _entry(
                    payment, surcharge_account, "surcharge", payment["surcharge_minor"], None, now
                )
            )
    for refund in connection.execute(_REFUNDED).mappings():
        payment, surcharge_account = taken[refund["payment_id"]]
        rows.append(
            _entry(
                payment,
                payment["settlement_account_id"],
                "refund",
                -refund["refund_minor"],
                refund["id"],
                now,
            )
        )
        if refund["surcharge_minor"]:
            rows.append(
                _entry(
                    payment,
                    surcharge_account,
                    "refund_surcharge",
                    -refund["surcharge_minor"],
                    refund["id"],
                    now,
                )
            )
    if rows:
        connection.execute(sa.insert(_ENTRIES), rows)


def _entry(
    payment: sa.RowMapping,
    account_id: uuid.UUID,
    kind: str,
    amount_minor: int,
    refund_id: uuid.UUID | None,
    now: datetime,
) -> dict[str, object]:
    return {
        "id": uuid.uuid4(),
        "firm_id": payment["firm_id"],
        "account_id": account_id,
        "currency": payment["currency"],
        "kind": kind,
        "amount_minor": amount_minor,
        "payment_id": payment["id"],
        "refund_id": refund_id,
        "artifact_id": payment["artifact_id"],
        "artifact_type": payment["artifact_type"],
        "created_at": now,
    }


def downgrade() -> None:
    op.drop_column("payments", "settlement_account_id")
    op.drop_column("payments", "fee_minor")
    op.drop_table("firm_pricing")
    op.drop_index("ix_payout_entries_payout_id", table_name="payout_entries")
    op.drop_table("payout_entries")
    for column in ("account_id", "payment_id", "refund_id", "artifact_id"):
        op.drop_index(f"ix_ledger_entries_{column}", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_index("ix_payouts_firm_created", table_name="payouts")
    op.drop_index("ix_payouts_partner_created", table_name="payouts")
    op.drop_table("payouts")
