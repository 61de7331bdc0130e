"""Alembic environment: migrations run against ``sqlalchemy.url`` of the config.

On PostgreSQL the run holds an advisory lock, so several hosts starting at once
apply each migration exactly once.
"""

from alembic import context
from sqlalchemy import text

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


def run_migrations() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set"
    engine = create_db_engine(url)
    with engine.connect() as connection:
        is_postgres = connection.dialect.name == "postgresql"
        if is_postgres:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if is_postgres:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
                connection.commit()
    engine.dispose()


run_migrations()
