"""The databases the bench runs on: a file per SQLite database, a throwaway database on the
PostgreSQL server per PostgreSQL one; and the bulk seed of invoices that the scaling figure
needs, with what an operator does after a bulk load.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import psycopg
from sqlalchemy import text

from partnerpay.db import Database, created_postgres_database, plain_postgres_connection

from .settings import POSTGRES_ADMIN_URL

# A new database of one kind, as a context manager yielding its URL.
NewDatabase = Callable[[], AbstractContextManager[str]]


@contextmanager
def sqlite_database(folder: Path, name: str) -> Iterator[str]:
    yield f"sqlite:///{folder / f'{name}.db'}"


def postgres_reachable() -> bool:
    try:
        with plain_postgres_connection(POSTGRES_ADMIN_URL):
            return True
    except psycopg.OperationalError:
        return False


def postgres_database() -> AbstractContextManager[str]:
    """A throwaway database on the PostgreSQL server at ``POSTGRES_ADMIN_URL``."""
    return created_postgres_database(POSTGRES_ADMIN_URL, "partnerpay_bench")


def seed_invoices(
    database: Database, firm_id: uuid.UUID, partner_id: uuid.UUID, upto: int
) -> tuple[int, int]:
    """Bulk-insert invoices with SQL until the firm has ``upto``, numbered ``seed-1``,
    ``seed-2``, … after any seeded before, and at least one; returns how many seeded ones
    and how many invoices in all exist."""
    with database.session() as session:
        account_id = session.execute(
            text(
                "SELECT id FROM settlement_accounts WHERE firm_id = :f AND account_type = 'Office'"
            ),
            {"f": firm_id.hex if database.engine.dialect.name == "sqlite" else firm_id},
        ).scalar_one()
        existing = session.execute(text("SELECT count(*) FROM invoices")).scalar_one()
        seeded = session.execute(
            text("SELECT count(*) FROM invoices WHERE external_id LIKE 'seed-%'")
        ).scalar_one()
        missing = max(upto - existing, 0 if seeded else 1)
        if not missing:
            return int(seeded), int(existing)
        sqlite = database.engine.dialect.name == "sqlite"
        ids = (
            ("lower(hex(randomblob(16)))", ":p", ":f", ":a")
            if sqlite
            else ("gen_random_uuid()", "CAST(:p AS uuid)", "CAST(:f AS uuid)", "CAST(:a AS uuid)")
        )
        series = (
            "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < :m) "
            if sqlite
            else ""
        )
        source = "FROM seq" if sqlite else "FROM generate_series(1, :m) AS seq(n)"
        now = "datetime('now')" if sqlite else "now()"
        session.execute(
            text(
                f"{series}INSERT INTO invoices (id, partner_id, firm_id, external_id, amount, "
                "amount_minor, amount_paid_minor, currency, status, settlement_account_id, "
                "settlement_account_type, line_items, surcharge_choice_override, created_at, "
                f"updated_at) SELECT {ids[0]}, {ids[1]}, {ids[2]}, 'seed-' || (n + :o), '10', "
                f"1000, 0, 'AUD', 'Submitted', {ids[3]}, 'Office', '[]', 'Default', {now}, {now} "
                f"{source}"
            ),
            {
                "m": missing,
                "o": seeded,
                "p": partner_id.hex if sqlite else str(partner_id),
                "f": firm_id.hex if sqlite else str(firm_id),
                "a": account_id if sqlite else str(account_id),
            },
        )
        session.commit()
    settle_bulk_load(database)
    return int(seeded + missing), int(existing + missing)


def settle_bulk_load(database: Database) -> None:
    """What an operator does after a bulk load: write it back from the write-ahead log to
    the database's files now, and (PostgreSQL) refresh the planner's statistics.

    Otherwise the reads measured next share the machine with that write-back: on
    PostgreSQL the million rows' log sets off a checkpoint that the server spreads over
    minutes, and SQLite's ``-wal`` file stayed 515 MB. A read session runs each statement
    in autocommit mode, outside the transaction neither command may run in."""
    with database.session(read_only=True) as session:
        if database.engine.dialect.name == "sqlite":
            session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        else:
            session.execute(text("ANALYZE invoices"))
            session.execute(text("CHECKPOINT"))
