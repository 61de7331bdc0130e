"""The job runner's own guarantees, with job kinds of the tests' own: whatever one job
raises is that job's failure and holds up no other key; no key holds more than half of a
lane's slots; a periodic kind runs once per period however many runners share the database.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from partnerpay.db import Database, utcnow
from partnerpay.jobs.models import JobSchedule
from partnerpay.jobs.periodic import PeriodicKind, PeriodicRun
from partnerpay.jobs.runner import Runner
from tests.support import wait_until


@dataclass(frozen=True)
class Chore:
    key: str
    number: int
    start_by: float = float("inf")


class Chores:
    """A job kind whose queue is a list in memory (the runner's transactions write nothing
    for it). ``run`` raises for the keys in ``raises_for`` and waits for ``release`` for the
    keys in ``blocks``."""

    name = "chores"
    concurrency = 4
    poll_interval = 0.05
    channel: str | None = None

    def __init__(self, jobs: list[Chore], raises_for: set[str], blocks: set[str]) -> None:
        self.due = list(jobs)
        self._lock = threading.Lock()
        self.raises_for, self.blocks = raises_for, blocks
        self.release = threading.Event()
        self.recorded: dict[Chore, str] = {}
        self.running: Counter[str] = Counter()
        self.most_running: Counter[str] = Counter()

    def claim(
        self,
        session: Session,  # noqa: ARG002  (the queue is in memory)
        limit: int,
        under_way: Mapping[Hashable, int],
        per_key: int,
    ) -> list[Chore]:
        counts: Counter[Hashable] = Counter(under_way)
        taken: list[Chore] = []
        with self._lock:
            for chore in list(self.due):
                if len(taken) < limit and counts[chore.key] < per_key:
                    counts[chore.key] += 1
                    taken.append(chore)
                    self.due.remove(chore)
        return taken

    def run(self, job: Chore) -> str:
        with self._lock:
            self.running[job.key] += 1
            self.most_running[job.key] = max(self.most_running[job.key], self.running[job.key])
        try:
            if job.key in self.blocks:
                self.release.wait(30)
            if job.key in self.raises_for:
                raise RuntimeError(f"chore {job.number} broke")
            return "done"
        finally:
            with self._lock:
                self.running[job.key] -= 1

    def failed(self, job: Chore, error: Exception) -> str:  # noqa: ARG002
        return f"failed: {error}"

    def unstarted(self, job: Chore) -> str:
        with self._lock:
            self.due.append(job)
        return "unstarted"

    def record(
        self,
        session: Session,  # noqa: ARG002
        finished: Sequence[tuple[Chore, str]],
    ) -> None:
        with self._lock:
            self.recorded.update(finished)

    def next_due_in(
        self,
        session: Session,  # noqa: ARG002
        full: Sequence[Hashable],
    ) -> float | None:
        with self._lock:
            return 0.0 if any(chore.key not in full for chore in self.due) else None

    def close(self) -> None:
        pass


def chores(key: str, count: int) -> list[Chore]:
    return [Chore(key, number) for number in range(count)]


@pytest.fixture
def running() -> Iterator[list[Runner]]:
    """Runners started by a test, stopped after it."""
    started: list[Runner] = []
    yield started
    for runner in started:
        runner.stop(timeout=10)


def start(running: list[Runner], database: Database, *kinds: Chores | PeriodicKind) -> Runner:
    runner = Runner(database, list(kinds))
    runner.start()
    running.append(runner)
    return runner


def test_a_job_that_raises_is_its_own_failure_and_other_keys_run(
    database: Database, running: list[Runner], caplog: pytest.LogCaptureFixture
) -> None:
    """Every job of one key raises: each is recorded as failed, with its traceback logged,
    and its slot comes back (three jobs at a share of two), while the other key's run."""
    kind = Chores(chores("broken", 3) + chores("sound", 3), raises_for={"broken"}, blocks=set())
    with caplog.at_level(logging.ERROR, logger="partnerpay.jobs.runner"):
        start(running, database, kind)
        wait_until(lambda: len(kind.recorded) == 6, 10, "every chore to be recorded")
    assert {chore: kind.recorded[chore] for chore in chores("sound", 3)} == dict.fromkeys(
        chores("sound", 3), "done"
    )
    assert [kind.recorded[chore] for chore in chores("broken", 3)] == [
        f"failed: chore {n} broke" for n in range(3)
    ]
    logged = [record for record in caplog.records if record.exc_info]
    assert len(logged) == 3
    assert all("chores: job of broken failed" in record.getMessage() for record in logged)


def test_a_key_whose_jobs_stall_holds_half_the_slots_at_most(
    database: Database, running: list[Runner]
) -> None:
    """Four slots: a key with more stalled jobs than that has two of them claimed, and
    another key's job runs meanwhile."""
    kind = Chores(chores("stalled", 6) + chores("other", 1), raises_for=set(), blocks={"stalled"})
    try:
        start(running, database, kind)
        wait_until(lambda: Chore("other", 0) in kind.recorded, 10, "the other key's job")
        assert [chore.number for chore in kind.due] == [2, 3, 4, 5]
        assert kind.most_running["stalled"] == 1  # one key's jobs run one after another
    finally:
        kind.release.set()
    wait_until(lambda: len(kind.recorded) == 7, 10, "every chore to be recorded")
    assert set(kind.recorded.values()) == {"done"}


class Clock:
    """A clock the test moves: the periodic kind's only source of time."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


class CountedPeriodic(PeriodicKind):
    """An hourly kind on the test's clock that counts the runner's claims."""

    def __init__(self, name: str, function: Callable[[], None], clock: Clock) -> None:
        super().__init__(name, timedelta(hours=1), function, clock=clock, poll_interval=0.05)
        self.claims = 0

    def claim(
        self, session: Session, limit: int, under_way: Mapping[Hashable, int], per_key: int
    ) -> Sequence[PeriodicRun]:
        claimed = super().claim(session, limit, under_way, per_key)
        self.claims += 1
        return claimed


def schedule_of(database: Database, name: str) -> JobSchedule:
    with database.session(read_only=True) as session:
        schedule = session.scalar(select(JobSchedule).where(JobSchedule.name == name))
        assert schedule is not None
        return schedule


def test_a_periodic_kind_runs_once_a_period_across_runners(
    fresh_database_url: str, running: list[Runner]
) -> None:
    """Two runners on one database, each with the hourly kind, race for every period: one
    run per period, whichever runner wins it. The kind's clock is the test's."""
    clock, runs = Clock(), []
    databases = [Database(fresh_database_url) for _ in range(2)]
    kinds = [CountedPeriodic("test-hourly", lambda: runs.append(clock.now), clock) for _ in "ab"]
    try:
        runners = [start(running, db, kind) for db, kind in zip(databases, kinds, strict=True)]
        wait_until(lambda: runs and all(k.claims >= 3 for k in kinds), 10, "both to claim")
        assert runs == [clock.now]
        claims_in_first_period = [kind.claims for kind in kinds]

        clock.now += timedelta(hours=1, seconds=1)
        for runner in runners:
            runner.wake()
        wait_until(
            lambda: (
                len(runs) >= 2
                and all(
                    k.claims >= n + 3 for k, n in zip(kinds, claims_in_first_period, strict=True)
                )
            ),
            10,
            "both to claim in the second period",
        )
        assert runs == [clock.now - timedelta(hours=1, seconds=1), clock.now]
        wait_until(
            lambda: schedule_of(databases[0], "test-hourly").leased_until is None,
            10,
            "the second run to be recorded",
        )
        schedule = schedule_of(databases[0], "test-hourly")
        assert (schedule.last_started_at, schedule.last_error) == (clock.now, None)
        assert schedule.due_at == clock.now + timedelta(hours=1)
    finally:
        for runner in running:
            runner.stop(timeout=10)
        running.clear()
        for database in databases:
            database.dispose()


def test_a_periodic_run_that_raises_is_recorded_as_failed(
    fresh_database_url: str, running: list[Runner]
) -> None:
    def broken() -> None:
        raise RuntimeError("the gateway is down")

    database = Database(fresh_database_url)
    try:
        start(running, database, CountedPeriodic("test-broken", broken, Clock()))
        wait_until(
            lambda: schedule_of_if_any(database, "test-broken", "last_error"),
            10,
            "the failed run to be recorded",
        )
        schedule = schedule_of(database, "test-broken")
        assert schedule.last_error == "RuntimeError: the gateway is down"
        assert schedule.leased_until is None
    finally:
        for runner in running:
            runner.stop(timeout=10)
        running.clear()
        database.dispose()


def schedule_of_if_any(database: Database, name: str, field: str) -> object:
    with database.session(read_only=True) as session:
        schedule = session.scalar(select(JobSchedule).where(JobSchedule.name == name))
        return getattr(schedule, field) if schedule is not None else None
