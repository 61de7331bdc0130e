"""Alembic environment: migrations run against ``sqlalchemy.url`` of the config.

On PostgreSQL the run holds an advisory lock, so several hosts starting at once
apply each migration exactly once.

On SQLite the run has foreign keys off (``db.py`` turns them on for every connection):
a migration that must rebuild a table (batch mode) drops it, and SQLite refuses to drop a
table other tables reference while they are on. Before the run's transaction commits,
``PRAGMA foreign_key_check`` must find no row whose foreign key points nowhere, or the
run fails and changes nothing: SQLite's documented procedure for changing a table's
schema (https://www.sqlite.org/lang_altertable.html#otheralter).
"""

from alembic import context
from sqlalchemy import Connection, text

from partnerpay.artifacts import models as _artifacts  # noqa: F401  (registers tables)
from partnerpay.db import Base, create_db_engine
from partnerpay.events import models as _events  # noqa: F401  (registers tables)
from partnerpay.firms import models as _firms  # noqa: F401
from partnerpay.invoices import models as _invoices  # noqa: F401
from partnerpay.jobs import models as _jobs  # noqa: F401
from partnerpay.ledger import models as _ledger  # noqa: F401
from partnerpay.partners import models as _partners  # noqa: F401
from partnerpay.payments import models as _payments  # noqa: F401

MIGRATION_LOCK_KEY = 7_356_210_001


def _without_foreign_keys(connection: Connection) -> None:
    """SQLite: foreign keys off for this connection. The pragma is a no-op inside a
    transaction, so it goes straight to the driver, before the run's transaction begins
    (SQLAlchemy would begin one first). The connection is this run's own and is closed
    with its engine."""
    connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]


def _require_foreign_keys_intact(connection: Connection) -> None:
    """SQLite: fail the run, in its transaction, if a row's foreign key points nowhere."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise RuntimeError(
            "The migration left rows whose foreign keys point nowhere "
            f"(table, rowid, referred table, key): {[tuple(row) for row in broken]}"
        )


def run_migrations() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set"
    engine = create_db_engine(url)
    with engine.connect() as connection:
        is_postgres = connection.dialect.name == "postgresql"
        is_sqlite = connection.dialect.name == "sqlite"
        if is_postgres:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()
        if is_sqlite:
            _without_foreign_keys(connection)
        try:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=is_sqlite,
                compare_type=True,
                # One transaction for the run on SQLite too (Alembic's default there is one
                # per migration), so that the foreign key check below can still undo it.
                transactional_ddl=True,
            )
            with context.begin_transaction():
                context.run_migrations()
                if is_sqlite:
                    _require_foreign_keys_intact(connection)
        finally:
            if is_postgres:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
                connection.commit()
    engine.dispose()


run_migrations()
