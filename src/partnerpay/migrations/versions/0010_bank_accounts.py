"""Bank accounts: a firm may have several settlement accounts of each type, one of them
the type's default, and deleting one keeps its row

The UNIQUE (firm_id, account_type) gives way to a partial unique index: one default per
(firm, type) among the accounts not deleted. Every existing account is its type's default
(it was the only one), ``Valid``, held by a ``company``, and last updated when it was
created. The server defaults that fill them stay: processes still running 0009 during a
rolling deploy know none of these columns, and the accounts they write (a new firm's, each
the first of its type) are just that, a ``Valid`` company's default. partnerpay itself
writes every column.

On SQLite the unique constraint is part of the table, which is rebuilt (batch mode, its
unnamed constraint named by ``NAMING_CONVENTION`` so that it can be dropped); other tables
reference it, so ``migrations/env.py`` runs migrations with foreign keys off and checks
them before committing. On PostgreSQL the constraint is dropped by the name PostgreSQL
gave it.

The downgrade restores the unique constraint, and refuses (changing nothing) while a firm
has more than one account of a type or a deleted one: revision 0009 can hold neither.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-14 10:00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import partnerpay.db

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "settlement_accounts"
NAMING_CONVENTION = {"uq": "uq_%(table_name)s_%(column_0_N_name)s"}
ONE_OF_EACH_TYPE = {
    "postgresql": "settlement_accounts_firm_id_account_type_key",
    "sqlite": "uq_settlement_accounts_firm_id_account_type",
}
DEFAULT_INDEX = "uq_settlement_accounts_default"
ONE_DEFAULT_PER_TYPE = "is_default AND deleted_at IS NULL"
# The new columns that existing rows, and rows written by 0009's code, fill from a
# server default: their type and that default.
FILLED_COLUMNS: dict[str, tuple[sa.types.TypeEngine[Any], Any]] = {
    "account_holder_type": (sa.String(16), "company"),
    "is_default": (sa.Boolean(), sa.true()),
    "status": (sa.String(16), "Valid"),
    # Existing rows are then given their created_at.
    "updated_at": (partnerpay.db.UTCDateTime(timezone=True), sa.text("CURRENT_TIMESTAMP")),
}
OPTIONAL_COLUMNS: dict[str, sa.types.TypeEngine[Any]] = {
    "external_id": sa.String(255),
    "address": sa.String(500),
    "alias": sa.String(200),
    "bank": sa.String(200),
    "deleted_at": partnerpay.db.UTCDateTime(timezone=True),
}


def _dialect() -> str:
    return str(op.get_bind().dialect.name)


def _settlement_accounts() -> Any:
    """The table's batch: rebuilt on SQLite, whose constraints are part of the table;
    altered in place on PostgreSQL, whose table others reference."""
    return op.batch_alter_table(
        TABLE,
        recreate="always" if _dialect() == "sqlite" else "auto",
        naming_convention=NAMING_CONVENTION,
    )


def upgrade() -> None:
    with _settlement_accounts() as batch_op:
        batch_op.drop_constraint(ONE_OF_EACH_TYPE[_dialect()], type_="unique")
        for name, (type_, default) in FILLED_COLUMNS.items():
            batch_op.add_column(sa.Column(name, type_, nullable=False, server_default=default))
        for name, type_ in OPTIONAL_COLUMNS.items():
            batch_op.add_column(sa.Column(name, type_, nullable=True))
        batch_op.create_index(
            DEFAULT_INDEX,
            ["firm_id", "account_type"],
            unique=True,
            sqlite_where=sa.text(ONE_DEFAULT_PER_TYPE),
            postgresql_where=sa.text(ONE_DEFAULT_PER_TYPE),
        )
    op.execute(f"UPDATE {TABLE} SET updated_at = created_at")


def _refuse_what_0009_cannot_hold() -> None:
    """Fail, before anything is changed, while a firm has more than one account of a type
    or a deleted one (which would come back as its account)."""
    accounts = sa.table(
        TABLE,
        sa.column("firm_id", sa.Uuid()),
        sa.column("account_type", sa.String()),
        sa.column("deleted_at", partnerpay.db.UTCDateTime()),
    )
    deleted = sa.func.count(accounts.c.deleted_at)
    crowded = (
        op.get_bind()
        .execute(
            sa.select(accounts.c.firm_id, accounts.c.account_type, sa.func.count(), deleted)
            .group_by(accounts.c.firm_id, accounts.c.account_type)
            .having((sa.func.count() > 1) | (deleted > 0))
            .order_by(accounts.c.firm_id, accounts.c.account_type)
        )
        .all()
    )
    if crowded:
        listed = "; ".join(
            f"firm {firm_id} has {count} {account_type} account(s), {of_them} deleted"
            for firm_id, account_type, count, of_them in crowded
        )
        raise RuntimeError(
            "Cannot downgrade below 0010: revision 0009 holds one bank account of each type "
            f"per firm and no deleted ones, and {listed}. Nothing was changed."
        )


def downgrade() -> None:
    _refuse_what_0009_cannot_hold()
    with _settlement_accounts() as batch_op:
        batch_op.drop_index(DEFAULT_INDEX)
        for name in (*FILLED_COLUMNS, *OPTIONAL_COLUMNS):
            batch_op.drop_column(name)
        batch_op.create_unique_constraint(ONE_OF_EACH_TYPE[_dialect()], ["firm_id", "account_type"])
