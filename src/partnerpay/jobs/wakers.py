"""How a runner learns that new jobs were committed, and how a writer says so.

A writer calls :func:`announce` (or :func:`wake_after_commit` when its own statement sends
the ``NOTIFY``) in the transaction that writes new jobs. After that transaction commits,
runners of this process that wait on the channel are woken at once; runners of other
processes are woken by PostgreSQL's ``NOTIFY``, which is sent in the same transaction, so
it is delivered at commit and dropped on rollback. A rolled-back transaction wakes no one.

A runner waits through one :class:`Waker`: in-process wakes always, plus a ``LISTEN``
thread on PostgreSQL; on SQLite, whose runners share the API's process or poll the
database file, the runner's own poll interval is the wake from other processes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import psycopg
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from partnerpay.db import Database, plain_postgres_connection

logger = logging.getLogger(__name__)

Wake = Callable[[str], None]  # called with the channel that was announced

_ANNOUNCED = "partnerpay_announced_channels"
_NOTIFY = text("SELECT pg_notify(:channel, '')")
_local_listeners: list[Wake] = []


def wake_after_commit(session: Session, channel: str) -> None:
    """Wake this process's runners waiting on ``channel`` once this transaction commits
    (other processes' runners need a ``NOTIFY`` on it too: see :func:`announce`)."""
    session.info.setdefault(_ANNOUNCED, set()).add(channel)


def announce(session: Session, channel: str) -> None:
    """Wake runners waiting on ``channel`` once this transaction commits: in this process
    directly, in others through PostgreSQL's ``NOTIFY`` (delivered at commit, dropped on
    rollback)."""
    wake_after_commit(session, channel)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_NOTIFY, {"channel": channel})


def on_announced(wake: Wake) -> Callable[[], None]:
    """Call ``wake`` with each channel announced by a commit in this process; returns an
    unsubscribe function."""
    _local_listeners.append(wake)
    return lambda: _local_listeners.remove(wake)


@event.listens_for(Session, "after_commit")
def _wake_local_runners(session: Session) -> None:
    channels = session.info.pop(_ANNOUNCED, None)
    if channels:
        for wake in list(_local_listeners):
            for channel in channels:
                wake(channel)


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back_announcements(session: Session) -> None:
    session.info.pop(_ANNOUNCED, None)


class Waker:
    """Calls ``wake(channel)`` when new jobs on one of ``channels`` were committed in this
    process, after the commit. On its own it is SQLite's waker: nothing reaches across
    processes there, and a runner looks at its queue every poll interval instead."""

    def __init__(self, channels: Iterable[str]) -> None:
        self.channels = sorted(set(channels))
        self._unsubscribe: Callable[[], None] | None = None

    def start(self, wake: Wake) -> None:
        watched = set(self.channels)

        def wake_if_watched(channel: str) -> None:
            if channel in watched:
                wake(channel)

        self._unsubscribe = on_announced(wake_if_watched)

    def stop(self, timeout: float = 30.0) -> None:  # noqa: ARG002  (ListeningWaker's)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


class ListeningWaker(Waker):
    """PostgreSQL's waker: in-process wakes, and other processes' ``NOTIFY`` through a
    ``LISTEN`` thread."""

    def __init__(self, database: Database, channels: Iterable[str]) -> None:
        super().__init__(channels)
        self._url = database.engine.url
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, wake: Wake) -> None:
        super().start(wake)
        self._thread = threading.Thread(
            target=self._listen, args=(wake,), name="jobs-listener", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        super().stop(timeout)
        if self._thread is not None:
            self._thread.join(timeout)

    def _listen(self, wake: Wake) -> None:
        while not self._stopping.is_set():
            try:
                with plain_postgres_connection(self._url) as connection:
                    for channel in self.channels:
                        connection.execute(f"LISTEN {channel}")
                    while not self._stopping.is_set():
                        for notification in connection.notifies(timeout=1.0, stop_after=1):
                            wake(notification.channel)
            except psycopg.Error:
                logger.exception("job listener lost its connection; reconnecting")
                self._stopping.wait(1.0)


def waker_for(database: Database, channels: Iterable[str]) -> Waker:
    """The waker for ``channels`` on this database: ``LISTEN`` on PostgreSQL, polling on
    SQLite (in-process wakes on both)."""
    channels = list(channels)
    if database.engine.dialect.name == "postgresql" and channels:
        return ListeningWaker(database, channels)
    return Waker(channels)
