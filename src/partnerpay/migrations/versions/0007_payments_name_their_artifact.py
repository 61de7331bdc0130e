"""A payment names the artifact it pays: payments.invoice_id becomes artifact_id, beside a
new artifact_type

Invoices, charges and trust deposits are kinds of one payable artifact, and a payment pays
one of them: ``artifact_id`` (the column ``invoice_id`` renamed, its data kept) with
``artifact_type`` saying which kind (``Invoice`` for every payment so far: a default that
fills the existing rows, then is dropped, so that every new payment says its kind). The
index, the unique constraint on (artifact, idempotency key) and the foreign key are
renamed with the column.

While invoices are the only artifact table, ``artifact_id`` stays a foreign key to
``invoices.id``. A foreign key can name one table only, so the migration that adds
charges (and trust deposits) drops it: a payment then references its artifact by
(``artifact_type``, ``artifact_id``), which the payments service writes only for an
artifact whose row it has locked, and which ``ix_payments_artifact_id`` still serves.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# PostgreSQL's names for the constraints it named itself (SQLite's are unnamed, and its
# batch mode rebuilds them on the renamed column).
POSTGRES_CONSTRAINTS = {
    "payments_invoice_id_idempotency_key_key": "payments_artifact_id_idempotency_key_key",
    "payments_invoice_id_fkey": "payments_artifact_id_fkey",
}


def _rename_column(old: str, new: str, constraints: dict[str, str]) -> None:
    """Rename ``payments.<old>`` with its index, and on PostgreSQL its constraints."""
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index(f"ix_payments_{old}")
        batch_op.alter_column(old, new_column_name=new)
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index(f"ix_payments_{new}", [new], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        for was, becomes in constraints.items():
            op.execute(f"ALTER TABLE payments RENAME CONSTRAINT {was} TO {becomes}")


def upgrade() -> None:
    _rename_column("invoice_id", "artifact_id", POSTGRES_CONSTRAINTS)
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("artifact_type", sa.String(32), nullable=False, server_default="Invoice")
        )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.alter_column("artifact_type", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_column("artifact_type")
    renamed_back = {new: old for old, new in POSTGRES_CONSTRAINTS.items()}
    _rename_column("artifact_id", "invoice_id", renamed_back)
