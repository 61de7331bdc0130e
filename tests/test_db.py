"""The database layer's own promises, below any route."""

from pathlib import Path

from sqlalchemy import text

from partnerpay.db import SQLITE_WAL_SIZE_LIMIT_BYTES, Database

MIB = 1024 * 1024
BIG_TRANSACTION_MIB = SQLITE_WAL_SIZE_LIMIT_BYTES // MIB + 16


def test_sqlite_wal_file_shrinks_back_after_a_large_transaction(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'big.db'}")
    wal = tmp_path / "big.db-wal"
    try:
        with database.session() as session:
            session.execute(text("CREATE TABLE blobs (body BLOB)"))
            session.commit()
        with database.session() as session:
            session.execute(
                text(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :m) "
                    "INSERT INTO blobs SELECT randomblob(:mib) FROM n"
                ),
                {"m": BIG_TRANSACTION_MIB, "mib": MIB},
            )
            session.commit()
        assert wal.stat().st_size > SQLITE_WAL_SIZE_LIMIT_BYTES
        for _ in range(2):  # one write's commit checkpoints the log; the next starts it again
            with database.session() as session:
                session.execute(text("INSERT INTO blobs VALUES (x'00')"))
                session.commit()
        assert wal.stat().st_size <= SQLITE_WAL_SIZE_LIMIT_BYTES
    finally:
        database.dispose()
