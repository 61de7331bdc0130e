"""The runner's own rows: when each periodic job is next due, and its run under way."""

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from partnerpay.db import Base


class JobSchedule(Base):
    """One periodic kind's schedule, shared by every runner on the database. A run is
    claimed by moving ``due_at`` a period on and leasing the row (``leased_until``), in one
    conditional ``UPDATE``: of runners racing for it, one wins."""

    __tablename__ = "job_schedules"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    due_at: Mapped[datetime]
    leased_until: Mapped[datetime | None]
    last_started_at: Mapped[datetime | None]
    last_finished_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
