"""The job runner: claims due jobs of every kind, runs them, records what happened.

It runs as threads inside ``partnerpay serve`` and alone as ``partnerpay worker``; any
number of runners can share one database, since a job is claimed with a lease (the kind's
statements say how). Each kind has a lane of its own: a loop thread, ``concurrency`` slots
and as many threads to run jobs on. A cycle of a lane is one write transaction that
records the outcomes of the jobs that have finished and claims more; it lingers 20 ms
first, so that a busy lane writes in batches rather than a transaction per job. No key
has more than half of a lane's slots: a key at its share is passed over by the claim and
waits for one of its jobs to finish, so a key whose jobs stall leaves the other half to
the rest. One key's jobs of a claim run one after another; a job that cannot start before
its ``start_by`` is handed back unstarted. Whatever a job raises is that job's failure:
logged with its traceback and recorded, its slot given back.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.orm import Session

from partnerpay.db import Database
from partnerpay.jobs.kinds import Job, JobKind
from partnerpay.jobs.wakers import waker_for

logger = logging.getLogger(__name__)

# A cycle (one write transaction) waits this long for more work to join it: woken by every
# commit and every finished job, it would otherwise run a transaction per job and compete
# with the API for the database's write slot (docs/performance.md).
LINGER_S = 0.02


def full_keys(under_way: dict[Hashable, int], per_key: int) -> list[Hashable]:
    """The keys with as many jobs under way as one may have."""
    return [key for key, count in under_way.items() if count >= per_key]


def _per_key(jobs: Sequence[Job]) -> list[list[Job]]:
    """A claim's jobs by key, each in the order claimed: one key's jobs run one after
    another, so they happen in order (unless a retry overtakes)."""
    grouped: dict[Hashable, list[Job]] = {}
    for job in jobs:
        grouped.setdefault(job.key, []).append(job)
    return list(grouped.values())


class Lane:
    """One kind's loop, slots and threads."""

    def __init__(self, kind: JobKind[Any, Any], database: Database, stopping: threading.Event):
        self.kind = kind
        self.database = database
        self.wake = threading.Event()
        self._stopping = stopping
        self._slots = threading.Semaphore(kind.concurrency)
        self.per_key = max(kind.concurrency // 2, 1)
        self._under_way: Counter[Hashable] = Counter()  # claimed, unfinished, by key
        self._under_way_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(kind.concurrency, thread_name_prefix=kind.name)
        self._finished: queue.SimpleQueue[tuple[Job, Any]] = queue.SimpleQueue()

    def loop(self) -> None:
        while not self._stopping.wait(LINGER_S):
            self.wake.clear()
            try:
                claimed = self._claim_and_run()
                if not claimed:
                    self._sleep_until_due()
            except Exception:
                logger.exception("%s: runner loop failed; retrying", self.kind.name)
                self._stopping.wait(self.kind.poll_interval)

    def finish(self) -> None:
        """After the loop has stopped: let the jobs under way finish, and record them."""
        self._executor.shutdown(wait=True)
        self.kind.close()
        with self.database.session() as session:
            self._record_finished(session)
            session.commit()

    def _claim_and_run(self) -> int:
        """One write transaction: record the jobs that have finished, claim more. A runner
        owns its transactions (no request's unit of work reaches here): it commits the
        claim's lease before running the jobs, outside any transaction."""
        free = self._acquire_free_slots()
        under_way = self._under_way_now()
        with self.database.session() as session:
            self._record_finished(session)
            jobs = self.kind.claim(session, free, under_way, self.per_key) if free else []
            session.commit()
        with self._under_way_lock:
            self._under_way.update(job.key for job in jobs)
        for _ in range(free - len(jobs)):
            self._slots.release()
        for in_order in _per_key(jobs):
            self._executor.submit(self._run_each, in_order)
        return len(jobs)

    def _run_each(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._run(job)

    def _record_finished(self, session: Session) -> None:
        finished = []
        while not self._finished.empty():
            finished.append(self._finished.get_nowait())
        if finished:
            self.kind.record(session, finished)

    def _acquire_free_slots(self) -> int:
        if not self._slots.acquire(timeout=self.kind.poll_interval):
            return 0
        free = 1
        while self._slots.acquire(blocking=False):
            free += 1
        return free

    def _under_way_now(self) -> dict[Hashable, int]:
        with self._under_way_lock:
            return dict(self._under_way)

    def _sleep_until_due(self) -> None:
        """Until the next job that can be claimed is due: a key's at its share waits for
        one of its jobs to finish, which wakes the loop."""
        full = full_keys(self._under_way_now(), self.per_key)
        with self.database.session(read_only=True) as session:
            due_in = self.kind.next_due_in(session, full)
        wait = self.kind.poll_interval
        if due_in is not None:
            wait = min(wait, due_in)
        if wait > 0:
            self.wake.wait(wait)

    def _run(self, job: Job) -> None:
        """Run, and hand the outcome to the loop, which records it with others; too late
        to start, hand the job back unstarted."""
        try:
            if time.monotonic() > job.start_by:
                self._finished.put((job, self.kind.unstarted(job)))
                return
            try:
                outcome = self.kind.run(job)
            except Exception as error:
                logger.exception("%s: job of %s failed", self.kind.name, job.key)
                outcome = self.kind.failed(job, error)
            self._finished.put((job, outcome))
        except Exception:
            logger.exception("%s: no outcome for a job of %s", self.kind.name, job.key)
        finally:
            with self._under_way_lock:
                self._under_way[job.key] -= 1
                if not self._under_way[job.key]:
                    del self._under_way[job.key]
            self._slots.release()
            self.wake.set()


class Runner:
    """Runs every kind given, each in a lane of its own; woken by new jobs' commits."""

    def __init__(self, database: Database, kinds: Sequence[JobKind[Any, Any]]) -> None:
        self.database = database
        self._stopping = threading.Event()
        self.lanes = [Lane(kind, database, self._stopping) for kind in kinds]
        self._lanes_of: dict[str, list[Lane]] = {}
        for lane in self.lanes:
            if lane.kind.channel is not None:
                self._lanes_of.setdefault(lane.kind.channel, []).append(lane)
        self._waker = waker_for(database, self._lanes_of)
        self._threads: list[threading.Thread] = []

    @property
    def kind_names(self) -> list[str]:
        return [lane.kind.name for lane in self.lanes]

    def start(self) -> None:
        self._waker.start(self._wake_channel)
        for lane in self.lanes:
            thread = threading.Thread(target=lane.loop, name=f"{lane.kind.name}-runner")
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        """Have every lane look at its queue now."""
        for lane in self.lanes:
            lane.wake.set()

    def _wake_channel(self, channel: str) -> None:
        for lane in self._lanes_of.get(channel, ()):
            lane.wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming, and let the jobs under way finish and be recorded."""
        self._stopping.set()
        self.wake()
        self._waker.stop(timeout)
        for thread in self._threads:
            thread.join(timeout)
        for lane in self.lanes:
            lane.finish()
