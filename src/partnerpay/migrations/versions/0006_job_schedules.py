"""job_schedules: when each periodic job is next due, and the run under way

A periodic job (partnerpay.jobs.periodic) runs at most once per period across every
runner on the database: a runner claims a run by moving its row's due_at a period on and
leasing the row. Additive: a new table, which older processes do not read.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import partnerpay.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_schedules",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("due_at", partnerpay.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("leased_until", partnerpay.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_started_at", partnerpay.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_finished_at", partnerpay.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("job_schedules")
