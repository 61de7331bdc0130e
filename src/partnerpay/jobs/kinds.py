"""What a domain implements to have the runner run its jobs, and where it registers it.

A job kind owns its jobs' rows and statements; the runner (:mod:`partnerpay.jobs.runner`)
owns the threads, the slots and the transactions. One cycle of the runner, in one write
transaction: :meth:`JobKind.record` the outcomes of the jobs that have finished, then
:meth:`JobKind.claim` more with a lease. Each claimed job then runs outside any
transaction, those of one key one after another. A domain registers a factory of its
kind with :func:`register` when its ``tasks`` module is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from sqlalchemy.orm import Session

from partnerpay.config import Settings
from partnerpay.db import Database


class Job(Protocol):
    """A claimed job, with everything needed to run it outside a transaction."""

    @property
    def key(self) -> Hashable:
        """Whose job it is (a webhook, a firm): no key has more than a runner's share of
        the slots of its kind, and one key's jobs of a claim run one after another."""

    @property
    def start_by(self) -> float:
        """``time.monotonic()`` by which it must start, or be handed back unstarted: started
        later it could outlast its lease, and another runner would run it again."""


J = TypeVar("J", bound=Job)
O = TypeVar("O")  # noqa: E741  (an outcome)


class JobKind(Protocol[J, O]):
    """One kind of job: its statements and what running one means."""

    name: str  # names the kind in logs and threads: "webhook-delivery"
    concurrency: int  # jobs under way at once per runner; half of them at most for one key
    poll_interval: float  # longest the runner sleeps between looks at the queue
    channel: str | None  # what announce() is called with when new jobs are written

    def claim(
        self, session: Session, limit: int, under_way: Mapping[Hashable, int], per_key: int
    ) -> Sequence[J]:
        """Up to ``limit`` due jobs, leased in the caller's transaction (it commits before
        they run), none that would bring a key's jobs ``under_way`` past ``per_key``."""

    def run(self, job: J) -> O:
        """Run one job, outside any transaction; its outcome. Should not raise: if it does,
        the runner logs the exception and records :meth:`failed` for the job instead."""

    def failed(self, job: J, error: Exception) -> O:
        """The outcome of a job whose :meth:`run` raised ``error``."""

    def unstarted(self, job: J) -> O:
        """The outcome of a job handed back because it could not start in time: recorded,
        it restores the job's schedule as it was before the claim."""

    def record(self, session: Session, finished: Sequence[tuple[J, O]]) -> None:
        """Record what finished jobs came to, in the caller's transaction. An outcome
        counts only for the claim it came from."""

    def next_due_in(self, session: Session, full: Sequence[Hashable]) -> float | None:
        """Seconds until the earliest job of a key not in ``full`` is due (0: due now;
        None: no job at all)."""

    def close(self) -> None:
        """Release what running jobs held (connections), after the last has finished."""


KindFactory = Callable[[Database, Settings], JobKind[Any, Any]]
_registered: dict[str, KindFactory] = {}


def register(name: str, build: KindFactory) -> None:
    """Have every runner (``serve``'s and ``partnerpay worker``) run the kind that
    ``build`` makes, under ``name``. Called by a domain's ``tasks`` module on import."""
    if name in _registered and _registered[name] is not build:
        raise ValueError(f"a job kind named {name!r} is registered already")
    _registered[name] = build


def registered_kinds(database: Database, settings: Settings) -> list[JobKind[Any, Any]]:
    """One of each registered kind, in the order they were registered."""
    return [build(database, settings) for build in _registered.values()]
