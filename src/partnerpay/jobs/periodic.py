"""Periodic jobs: a function run every N seconds, at most once per period across every
runner on the database.

Each periodic kind has a row in ``job_schedules``. A runner claims a run with one
conditional ``UPDATE`` that moves the row's ``due_at`` a period on and leases it; of runners
racing for it, one changes the row and the others find it no longer due (SQLite lets one
writer in at a time; PostgreSQL re-checks the condition on the row the winner wrote). The
first claim ever inserts the row, and a conflicting insert means another runner won. So a
run starts at most once per period, wherever runners run. A run that fails, or dies with its
process, is not tried again before the next period (the error is kept in ``last_error``);
a run that outlasts its lease (its period unless given) may overlap the next one.

A domain declares one in its ``tasks`` module::

    register_periodic("reconcile-payments", reconcile_interval, reconcile_payments)

where ``reconcile_payments(database, settings)`` opens the sessions it needs and the
period is a ``timedelta`` or, as here, a function of the settings that gives one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session

from partnerpay.config import Settings
from partnerpay.db import Database, PerDialect, table_of, utcnow
from partnerpay.jobs.kinds import register
from partnerpay.jobs.models import JobSchedule

PeriodicFunction = Callable[[Database, Settings], None]
Clock = Callable[[], datetime]

_schedules = table_of(JobSchedule)
_TAKE_DUE = (
    update(_schedules)
    .where(
        _schedules.c.name == bindparam("schedule"),
        _schedules.c.due_at <= bindparam("now"),
        or_(_schedules.c.leased_until.is_(None), _schedules.c.leased_until <= bindparam("now")),
    )
    .values(due_at=bindparam("next_due"), leased_until=bindparam("lease_until"))
)
_TAKE_FIRST = PerDialect(
    lambda insert: (
        insert(_schedules)
        .values(
            name=bindparam("schedule"),
            due_at=bindparam("next_due"),
            leased_until=bindparam("lease_until"),
        )
        .on_conflict_do_nothing(index_elements=["name"])
        .execution_options(preserve_rowcount=True)
    )
)
_SCHEDULE = select(_schedules.c.due_at, _schedules.c.leased_until).where(
    _schedules.c.name == bindparam("schedule")
)
_ON_RUN = update(_schedules).where(
    _schedules.c.name == bindparam("schedule"),
    _schedules.c.leased_until == bindparam("lease_until"),
)
_FINISHED = _ON_RUN.values(
    leased_until=None,
    last_started_at=bindparam("started_at"),
    last_finished_at=bindparam("now"),
    last_error=bindparam("error"),
)
_HAND_BACK = _ON_RUN.values(leased_until=None, due_at=bindparam("started_at"))


@dataclass(frozen=True)
class PeriodicRun:
    """A claimed run; its lease's end tells it from a later claim."""

    name: str
    started_at: datetime
    lease_until: datetime
    start_by: float

    @property
    def key(self) -> Hashable:
        return self.name


@dataclass(frozen=True)
class RunOutcome:
    error: str | None
    ran: bool = True


class PeriodicKind:
    """Runs ``function`` every ``every``, at most once per period across all runners."""

    concurrency: int = 1
    channel: str | None = None  # nothing announces a periodic job: it is due by the clock

    def __init__(
        self,
        name: str,
        every: timedelta,
        function: Callable[[], None],
        *,
        lease: timedelta | None = None,
        clock: Clock = utcnow,
        poll_interval: float = 1.0,
    ) -> None:
        self.name = name
        self.every = every
        self.lease = lease or every
        self.poll_interval = min(poll_interval, every.total_seconds())
        self._function = function
        self._clock = clock
        # When the schedule was last read to be due: only a claim moves it on (a hand back
        # moves it back to the claim's time), so until then a claim need not ask the
        # database, and an idle lane costs no query.
        self._due_at: datetime | None = None

    def claim(
        self, session: Session, limit: int, under_way: Mapping[Hashable, int], per_key: int
    ) -> Sequence[PeriodicRun]:
        now = self._clock()
        if not limit or under_way.get(self.name, 0) >= per_key or self._not_due(now):
            return []
        run = PeriodicRun(
            self.name, now, now + self.lease, time.monotonic() + self.lease.total_seconds() / 2
        )
        taken = {
            "schedule": self.name,
            "now": now,
            "next_due": now + self.every,
            "lease_until": run.lease_until,
        }
        claimed = session.execute(_TAKE_DUE, taken).rowcount  # type: ignore[attr-defined]
        if not claimed:
            claimed = session.execute(_TAKE_FIRST.of(session), taken).rowcount  # type: ignore[attr-defined]
        self._due_at = None  # read again once this run has finished
        return [run] if claimed else []

    def _not_due(self, now: datetime) -> bool:
        return self._due_at is not None and now < self._due_at

    def run(self, job: PeriodicRun) -> RunOutcome:  # noqa: ARG002  (one run is like another)
        self._function()
        return RunOutcome(error=None)

    def failed(self, job: PeriodicRun, error: Exception) -> RunOutcome:  # noqa: ARG002
        return RunOutcome(error=f"{type(error).__name__}: {error}"[:500])

    def unstarted(self, job: PeriodicRun) -> RunOutcome:  # noqa: ARG002
        return RunOutcome(error=None, ran=False)

    def record(self, session: Session, finished: Sequence[tuple[PeriodicRun, RunOutcome]]) -> None:
        for run, outcome in finished:
            params: dict[str, Any] = {
                "schedule": run.name,
                "lease_until": run.lease_until,
                "started_at": run.started_at,
            }
            if outcome.ran:
                session.execute(_FINISHED, {**params, "now": self._clock(), "error": outcome.error})
            else:
                session.execute(_HAND_BACK, params)
                self._due_at = None

    def next_due_in(self, session: Session, full: Sequence[Hashable]) -> float | None:
        if self.name in full:
            return None  # its run is under way; its end wakes the runner
        now = self._clock()
        if self._not_due(now):
            assert self._due_at is not None
            return (self._due_at - now).total_seconds()
        schedule = session.execute(_SCHEDULE, {"schedule": self.name}).first()
        session.rollback()  # the runner's session (jobs own their transactions): the read ends
        if schedule is None:
            return 0.0
        due_at: datetime = max(schedule.due_at, schedule.leased_until or schedule.due_at)
        self._due_at = due_at
        return max((due_at - now).total_seconds(), 0.0)

    def close(self) -> None:
        pass


Period = timedelta | Callable[[Settings], timedelta]


def periodic(
    name: str, every: Period, function: PeriodicFunction, *, lease: timedelta | None = None
) -> Callable[[Database, Settings], PeriodicKind]:
    """A factory of the periodic kind that runs ``function(database, settings)``; ``every``
    is the period, or reads it from the settings."""

    def build(database: Database, settings: Settings) -> PeriodicKind:
        period = every if isinstance(every, timedelta) else every(settings)
        return PeriodicKind(name, period, lambda: function(database, settings), lease=lease)

    return build


def register_periodic(
    name: str, every: Period, function: PeriodicFunction, *, lease: timedelta | None = None
) -> None:
    """Have every runner run ``function(database, settings)`` every ``every``, at most once
    per period across all of them."""
    register(name, periodic(name, every, function, lease=lease))
