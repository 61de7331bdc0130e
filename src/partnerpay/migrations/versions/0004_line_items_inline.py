"""Keep line items and the settlement account's type on the invoice row

An invoice is read and written whole: keeping its line items in a JSON column and its
settlement account's type beside the account's id saves a query and a join on every
read, and makes an invoice one row, written whole or not at all.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 10:00:00
"""

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LINE_ITEM_KEYS = ("amount", "name", "description", "quantity", "tax_rate")


def upgrade() -> None:
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("settlement_account_type", sa.String(16), nullable=True))
        batch_op.add_column(sa.Column("line_items", sa.JSON(), nullable=True))

    connection = op.get_bind()
    old_items = sa.table(
        "invoice_line_items",
        sa.column("invoice_id", sa.Uuid()),
        sa.column("position", sa.Integer()),
        *(sa.column(key) for key in LINE_ITEM_KEYS),
    )
    items: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    ordered = sa.select(old_items).order_by(old_items.c.invoice_id, old_items.c.position)
    for row in connection.execute(ordered).mappings():
        item = {key: row[key] for key in LINE_ITEM_KEYS if row[key] is not None}
        items[row["invoice_id"]].append(item)
    invoices = sa.table(
        "invoices",
        sa.column("id", sa.Uuid()),
        sa.column("line_items", sa.JSON()),
    )
    for invoice_id, line_items in items.items():
        connection.execute(
            invoices.update().where(invoices.c.id == invoice_id).values(line_items=line_items)
        )
    connection.execute(sa.text("UPDATE invoices SET line_items = '[]' WHERE line_items IS NULL"))
    connection.execute(
        sa.text(
            "UPDATE invoices SET settlement_account_type = (SELECT account_type FROM "
            "settlement_accounts AS a WHERE a.id = invoices.settlement_account_id)"
        )
    )
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.alter_column("settlement_account_type", nullable=False)
        batch_op.alter_column("line_items", nullable=False)
    op.drop_table("invoice_line_items")


def downgrade() -> None:
    op.create_table(
        "invoice_line_items",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("amount", sa.String(length=16), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("tax_rate", sa.String(length=10), nullable=True),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_column("line_items")
        batch_op.drop_column("settlement_account_type")
