"""Engine, sessions and migrations.

SQLite is the embedded default (WAL mode, one writer at a time: every write transaction
starts with ``BEGIN IMMEDIATE`` so that concurrent writers queue on ``busy_timeout``
instead of failing when a read lock cannot be upgraded). PostgreSQL is used when
``PARTNERPAY_DATABASE_URL`` names it.
"""

from __future__ import annotations

import select
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import DateTime, Dialect, Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

T = TypeVar("T")

READ_ONLY = "partnerpay_read_only"
SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_POOL_SIZE = 40  # more than the worker threads and the dispatcher use
# The -wal file grows to hold the largest transaction since it was last reset and, unless
# limited, stays that size: 515 MB after the bench's bulk seed. Normal writes checkpoint it
# every 1 000 pages (about 4 MB).
SQLITE_WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend, truncated to milliseconds.

    SQLite keeps no offset, so values are stored as naive UTC and given their
    timezone back when loaded; PostgreSQL stores ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = truncate_to_millis(value.astimezone(UTC))
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self,
        value: datetime | None,
        dialect: Dialect,  # noqa: ARG002  (the signature is SQLAlchemy's)
    ) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime}


def truncate_to_millis(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


class PerDialect(Generic[T]):
    """An ``INSERT ... ON CONFLICT`` statement built once for each database (the clause is
    dialect-specific): building a statement costs more than running it."""

    def __init__(self, build: Callable[[Callable[..., Any]], T]) -> None:
        self._built = {"sqlite": build(sqlite.insert), "postgresql": build(postgresql.insert)}

    def of(self, session: Session) -> T:
        return self._built[session.get_bind().dialect.name]


def table_of(model: type[Base]) -> Table:
    """A model's table, for plain (Core) statements where the ORM's bookkeeping is not
    wanted."""
    return Base.metadata.tables[model.__tablename__]


def utcnow() -> datetime:
    return truncate_to_millis(datetime.now(UTC))


def same_instant_as_created_at(context: DefaultExecutionContext) -> datetime:
    """``updated_at``'s default: the new row's own ``created_at`` (SQLAlchemy fills in
    defaults in column order, so ``created_at`` must come first). Two calls of ``utcnow``
    could straddle a millisecond, and a new row would look updated."""
    created_at: datetime = context.get_current_parameters()["created_at"]  # type: ignore[no-untyped-call]
    return created_at


def new_id() -> uuid.UUID:
    return uuid.uuid4()


WRITE_LOCK_HELD = "partnerpay_write_lock_held"


def _configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys, and one writer at a time.

    Writers of this process queue on a lock before ``BEGIN IMMEDIATE``: handing the
    write slot over through a lock is immediate, whereas SQLite's own busy handler polls
    with sleeps of up to 100 ms. The busy timeout still covers writers in other
    processes (``partnerpay worker`` beside ``serve``).
    """
    write_lock = threading.Lock()

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA journal_size_limit={SQLITE_WAL_SIZE_LIMIT_BYTES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(READ_ONLY, False):
            return  # reads run in autocommit mode, like PostgreSQL's: no BEGIN, no ROLLBACK
        write_lock.acquire()
        connection.info[WRITE_LOCK_HELD] = True
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            release_write_lock(connection)
            raise

    def release_write_lock(connection: Connection) -> None:
        if connection.info.pop(WRITE_LOCK_HELD, False):
            write_lock.release()

    def finish_then_release(statement: str) -> Callable[[Connection], None]:
        # These events fire before SQLAlchemy ends the transaction; end it here, so the
        # next writer never finds the database still locked (the driver's own commit or
        # rollback that follows is then a no-op: the connection is in autocommit mode).
        def listener(connection: Connection) -> None:
            if not connection.info.get(WRITE_LOCK_HELD):
                return
            driver_connection: Any = connection.connection.driver_connection
            try:
                if driver_connection.in_transaction:  # not so when BEGIN itself failed
                    driver_connection.execute(statement)
            finally:
                release_write_lock(connection)

        return listener

    event.listen(engine, "commit", finish_then_release("COMMIT"))
    event.listen(engine, "rollback", finish_then_release("ROLLBACK"))


def create_db_engine(database_url: str, pool_size: int = 20) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        # One connection per worker thread: SQLite connections are cheap to keep and each
        # new one pays for its PRAGMAs, so none are opened and closed per request.
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=SQLITE_POOL_SIZE,
        )
        _configure_sqlite(engine)
        return engine
    # A fixed pool: requests wait for a connection rather than open one (a PostgreSQL
    # connection is a process; opening one per burst costs more than the wait).
    engine = create_engine(url, pool_size=pool_size, max_overflow=0, pool_timeout=30)
    event.listen(engine, "checkout", _replace_if_hung_up)
    return engine


def _replace_if_hung_up(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Hand out no pooled PostgreSQL connection the server has hung up on (a restart, a
    failover, an idle timeout, ``pg_terminate_backend``): the server's goodbye makes an
    idle connection's socket readable, which a poll sees without a round trip. SQLAlchemy
    then opens a fresh connection in its place.

    This replaces ``pool_pre_ping``, whose round trip per checkout cost a tenth of a
    create (docs/performance.md). Like a ping, it cannot see a server that vanished
    without a word; a query on such a connection fails and the pool is refreshed."""
    if dbapi_connection.closed or select.select([dbapi_connection.fileno()], [], [], 0)[0]:
        raise DisconnectionError("the server closed this connection")


def plain_postgres_connection(database_url: str | URL) -> psycopg.Connection[tuple[Any, ...]]:
    """A psycopg connection in autocommit mode outside SQLAlchemy's pool, to the database a
    SQLAlchemy URL names: for ``LISTEN``, and for tools that create and drop databases."""
    url = make_url(database_url).set(drivername="postgresql")
    return psycopg.connect(
        url.render_as_string(hide_password=False), autocommit=True, connect_timeout=3
    )


@contextmanager
def created_postgres_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A new database, ``<prefix>_<random>``, on the PostgreSQL server that ``admin_url``
    names, dropped afterwards with any connection still open to it: for tests and
    benchmarks. Yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with plain_postgres_connection(admin_url) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with plain_postgres_connection(admin_url) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def committed(session: Session) -> Iterator[Session]:
    """One unit of work on ``session``: committed once when the block ends normally, rolled
    back on any exception (a 4xx ``ProblemError`` included, and a commit that fails), so
    nothing is half-written.
    A read-only session is left alone: it runs in autocommit mode and has nothing to end."""
    if is_read_only(session):
        yield session
        return
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()  # a failed commit's too: the connection goes back clean
        raise


def is_read_only(session: Session) -> bool:
    return bool(session.info.get(READ_ONLY))


class Database:
    """The engine and the two kinds of session a request can have."""

    def __init__(self, database_url: str, pool_size: int = 20) -> None:
        self.engine = create_db_engine(database_url, pool_size)
        self._writer = sessionmaker(self.engine, expire_on_commit=False)
        reads: dict[str, Any] = {READ_ONLY: True}
        if self.engine.dialect.name == "postgresql":
            # A read needs no transaction: no BEGIN and ROLLBACK round trips around it.
            reads["isolation_level"] = "AUTOCOMMIT"
        self._reader = sessionmaker(
            self.engine.execution_options(**reads), expire_on_commit=False, info={READ_ONLY: True}
        )

    def session(self, *, read_only: bool = False) -> Session:
        return (self._reader if read_only else self._writer)()

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """A write session for one unit of work outside a request (a CLI command, the demo's
        seed, a test's setup): services change it and flush; this commits once at the end
        of the block, or rolls back if it raises, and closes the session."""
        with self.session() as session, committed(session):
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("partnerpay") / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_database(database_url: str) -> None:
    """Apply every Alembic migration not yet applied (safe to run from several hosts)."""
    command.upgrade(alembic_config(database_url), "head")
