"""Keep a fingerprint of the request that made each payment

A payment's idempotency key (an outside payment's ``external_id``) answers a retry with the
first result; the fingerprint lets a different request sent with the same key be refused
(409 ``idempotency_key_reused``) instead. It is a keyed hash, so the card number it covers
is never stored. Payments made before this migration have none, and any request with
their key is taken as their retry, as before.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_fingerprint", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_column("request_fingerprint")
