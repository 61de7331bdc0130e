"""Migrations keep the data they move: a database with invoices, payments and refunds in
it goes down a revision and up again, on SQLite (batch mode, with foreign keys off and
checked before the run commits, or a plain ADD COLUMN) and on PostgreSQL."""

import sqlite3
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Uuid, bindparam, inspect, text

from partnerpay.config import Settings
from partnerpay.db import Database, UTCDateTime, alembic_config, upgrade_database, utcnow
from partnerpay.firms.models import SettlementAccount
from partnerpay.invoices import service as invoices
from partnerpay.invoices.schemas import InvoiceIn, InvoiceOut
from partnerpay.payments import refunds
from partnerpay.payments import service as payments
from partnerpay.payments.gateways.sandbox import SandboxGateway
from partnerpay.payments.models import Payment
from partnerpay.payments.schemas import ExternalPaymentIn, PaymentIn, RefundIn
from partnerpay.payouts.verification import verify_ledger
from tests.conftest import throwaway_postgres_database
from tests.support import Firm, Partner, create_firm, create_partner, invoice_body


@pytest.fixture
def own_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A database of ``database_url``'s backend that this test migrates as it likes."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'migrated.db'}"
        return
    with throwaway_postgres_database() as url:
        yield url


def _columns_and_keys(database: Database) -> dict[str, Any]:
    schema = inspect(database.engine)
    return {
        "columns": {c["name"]: c["nullable"] for c in schema.get_columns("payments")},
        "indexes": sorted(
            (i["name"], tuple(i["column_names"])) for i in schema.get_indexes("payments")
        ),
        "unique": sorted(
            (u["name"], tuple(u["column_names"])) for u in schema.get_unique_constraints("payments")
        ),
        "foreign_keys": sorted(
            (f["name"], tuple(f["constrained_columns"]), f["referred_table"])
            for f in schema.get_foreign_keys("payments")
        ),
    }


def test_payments_name_their_artifact_and_keep_their_invoice(own_database_url: str) -> None:
    """0007 renames payments.invoice_id to artifact_id and adds artifact_type; a payment
    made before it pays the same invoice after it, as an ``Invoice``, and back again."""
    upgrade_database(own_database_url)
    database = Database(own_database_url)
    try:
        settings = Settings(database_url=own_database_url)
        partner = create_partner(database)
        firm = create_firm(database, partner)
        with database.unit_of_work() as session:
            created = invoices.upsert_invoice(
                session, partner.id, InvoiceIn.model_validate(invoice_body(firm)), "http://pay.test"
            )
        outside = {
            "artifact_id": str(created.invoice_id),
            "amount": "10",
            "external_id": "cash-1",
            "payment_type": "Cash",
        }
        with database.unit_of_work() as session:
            paid, _ = payments.record_external_payment(
                session, partner.id, ExternalPaymentIn.model_validate(outside), settings
            )
        migrated = _columns_and_keys(database)
        database.engine.dispose()

        command.downgrade(alembic_config(own_database_url), "0006")
        with database.session(read_only=True) as session:
            before = session.execute(text("SELECT invoice_id, idempotency_key FROM payments")).all()
        assert [(str(row[0]).replace("-", ""), row[1]) for row in before] == [
            (created.invoice_id.hex, "external:cash-1")
        ]
        assert "artifact_type" not in _columns_and_keys(database)["columns"]
        database.engine.dispose()

        upgrade_database(own_database_url)
        assert _columns_and_keys(database) == migrated
        assert migrated["columns"]["artifact_type"] is False
        with database.session(read_only=True) as session:
            payment = session.get_one(Payment, paid.id)
            assert (payment.artifact_id, payment.artifact_type) == (created.invoice_id, "Invoice")
            view = InvoiceOut.of(
                invoices.get_invoice(session, partner.id, created.invoice_id), "http://pay.test"
            )
        assert [
            (line.payment_id, line.artifact_id, line.artifact_type) for line in view.payments
        ] == [(paid.id, created.invoice_id, "Invoice")]
        assert Decimal(view.amount_due) == Decimal(created.amount_due) - 10
    finally:
        database.dispose()


def test_the_schema_names_follow_the_artifact(database_url: str, database: Database) -> None:
    """The index, unique constraint and foreign key are named after ``artifact_id`` (on
    PostgreSQL, which names them; SQLite leaves the constraints unnamed)."""
    keys = _columns_and_keys(database)
    assert "invoice_id" not in keys["columns"]
    assert ("ix_payments_artifact_id", ("artifact_id",)) in keys["indexes"]
    named = [name for name, *_ in keys["unique"] + keys["foreign_keys"]]
    if database_url.startswith("postgresql"):
        assert sorted(named) == [
            "payments_artifact_id_fkey",
            "payments_artifact_id_idempotency_key_key",
        ]


def _paid_and_refunded(
    database: Database, settings: Settings, partner: Partner, firm: Firm
) -> tuple[uuid.UUID, uuid.UUID]:
    """An invoice paid by card on the sandbox and a refund of 10.00 of it: their ids."""
    with database.unit_of_work() as session:
        created = invoices.upsert_invoice(
            session, partner.id, InvoiceIn.model_validate(invoice_body(firm)), "http://pay.test"
        )
    paying = PaymentIn.model_validate(
        {
            "method": "Card",
            "card": {
                "number": "4242424242424242",
                "exp_month": 12,
                "exp_year": 2099,
                "cvc": "123",
                "name": "F",
            },
            "idempotency_key": "pay-1",
        }
    )
    with database.unit_of_work() as session:
        taken = payments.pay_invoice(
            session, str(created.invoice_id), paying, SandboxGateway(), settings
        )
        payment_id = taken.payment.id
    with database.unit_of_work() as session:
        refunds.refund_payment(
            session,
            partner.id,
            str(payment_id),
            RefundIn(refund_amount="10.00"),
            "refund-1",
            SandboxGateway(),
            "http://pay.test",
        )
    return created.invoice_id, payment_id


def _refunded_line(database: Database, partner: Partner, invoice_id: uuid.UUID) -> str:
    with database.session(read_only=True) as session:
        view = InvoiceOut.of(
            invoices.get_invoice(session, partner.id, invoice_id), "http://pay.test"
        )
    (line,) = view.payments
    return line.refunded


def test_refunds_go_with_a_downgrade_and_invoices_come_back_with_nothing_refunded(
    own_database_url: str,
) -> None:
    """0009 adds the refunds table and invoices.refunded_minor (a plain ADD COLUMN on
    SQLite); going down to 0008 drops both and keeps the invoice and its payment, and
    coming back up gives every invoice 0 refunded, so its payment can be refunded again."""
    upgrade_database(own_database_url)
    database = Database(own_database_url)
    try:
        settings = Settings(database_url=own_database_url)
        partner = create_partner(database)
        firm = create_firm(database, partner)
        invoice_id, payment_id = _paid_and_refunded(database, settings, partner, firm)
        assert _refunded_line(database, partner, invoice_id) == "10.00"
        assert "refunds" in inspect(database.engine).get_table_names()
        database.engine.dispose()

        command.downgrade(alembic_config(own_database_url), "0008")
        schema = inspect(database.engine)
        assert "refunds" not in schema.get_table_names()
        assert "refunded_minor" not in {c["name"] for c in schema.get_columns("invoices")}
        with database.session(read_only=True) as session:
            kept = session.execute(text("SELECT id FROM payments")).scalars().all()
        assert [str(row).replace("-", "") for row in kept] == [payment_id.hex]
        database.engine.dispose()

        upgrade_database(own_database_url)
        columns = {c["name"]: c for c in inspect(database.engine).get_columns("invoices")}
        assert columns["refunded_minor"]["nullable"] is False
        assert _refunded_line(database, partner, invoice_id) == "0.00"
        with database.unit_of_work() as session:
            again = refunds.refund_payment(
                session,
                partner.id,
                str(payment_id),
                RefundIn(refund_amount="123.45"),
                None,
                SandboxGateway(),
                "http://pay.test",
            )
            assert again.artifact.refunded_minor == 12345
        assert _refunded_line(database, partner, invoice_id) == "123.45"
    finally:
        database.dispose()


def test_the_ledger_starts_with_the_money_already_taken(own_database_url: str) -> None:
    """0011 adds the ledger; going down drops it and keeps payments and refunds, and coming
    back up writes the entries of every successful gateway payment and counted refund, so
    the ledger verifies and the money is there to pay out."""
    upgrade_database(own_database_url)
    database = Database(own_database_url)
    try:
        settings = Settings(database_url=own_database_url)
        partner = create_partner(database)
        firm = create_firm(database, partner)
        _paid_and_refunded(database, settings, partner, firm)
        database.engine.dispose()

        config = alembic_config(own_database_url)
        before_ledger = ScriptDirectory.from_config(config).get_revision("0011").down_revision
        assert isinstance(before_ledger, str)
        command.downgrade(config, before_ledger)
        assert "ledger_entries" not in inspect(database.engine).get_table_names()
        database.engine.dispose()

        upgrade_database(own_database_url)
        with database.session(read_only=True) as session:
            report = verify_ledger(session)
            assert report.problems == []
            (books,) = report.accounts
            assert (books.received, books.pending, books.paid_out) == (
                12345 - 1000,
                12345 - 1000,
                0,
            )
    finally:
        database.dispose()


def _settlement_account_keys(database: Database) -> dict[str, Any]:
    schema = inspect(database.engine)
    return {
        "columns": {c["name"]: c["nullable"] for c in schema.get_columns("settlement_accounts")},
        "unique": sorted(
            (u["name"], tuple(u["column_names"]))
            for u in schema.get_unique_constraints("settlement_accounts")
        ),
        "indexes": sorted(
            (i["name"], tuple(i["column_names"]), bool(i["unique"]))
            for i in schema.get_indexes("settlement_accounts")
        ),
    }


def _second_office_account(database: Database, firm: Firm) -> uuid.UUID:
    with database.unit_of_work() as session:
        account = SettlementAccount(
            firm_id=firm.id,
            account_type="Office",
            account_name="Second Office",
            branch_code="062-000",
            account_number="12345678",
            country_code="AU",
        )
        session.add(account)
        session.flush()
        assert account.is_default is False
        return account.id


def _account_as_0009_writes_it(database: Database, firm: Firm) -> uuid.UUID:
    """A new firm's Trust account inserted with 0009's columns only, as a process still
    running 0009's code during a rolling deploy writes it."""
    account_id = uuid.uuid4()
    columns = "id, firm_id, account_type, account_name, branch_code, account_number, created_at"
    with database.unit_of_work() as session:
        session.execute(
            text(
                f"INSERT INTO settlement_accounts ({columns}) "
                "VALUES (:id, :firm_id, 'Trust', 'Old Trust', '000-000', '000000000', :now)"
            ).bindparams(
                bindparam("id", type_=Uuid()),
                bindparam("firm_id", type_=Uuid()),
                bindparam("now", type_=UTCDateTime()),
            ),
            {"id": account_id, "firm_id": firm.id, "now": utcnow()},
        )
    return account_id


def test_bank_accounts_come_back_from_one_of_each_type(
    database_url: str, own_database_url: str
) -> None:
    """0010 drops the unique (firm, account type) for a partial unique index of one
    default per type; going down to 0009 restores the constraint and keeps the accounts an
    invoice settles to (SQLite rebuilds the table others reference), and coming back up
    makes each of them its type's default. A firm with two accounts of a type cannot go
    down, and nothing is changed. An account written by 0009's code (a rolling deploy)
    is its type's default, Valid and a company's."""
    upgrade_database(own_database_url)
    database = Database(own_database_url)
    try:
        partner = create_partner(database)
        firm = create_firm(database, partner, trust_account=True)
        with database.unit_of_work() as session:
            created = invoices.upsert_invoice(
                session, partner.id, InvoiceIn.model_validate(invoice_body(firm)), "http://pay.test"
            )
        migrated = _settlement_account_keys(database)
        assert ("uq_settlement_accounts_default", ("firm_id", "account_type"), True) in migrated[
            "indexes"
        ]
        assert migrated["unique"] == []
        database.engine.dispose()

        command.downgrade(alembic_config(own_database_url), "0009")
        down = _settlement_account_keys(database)
        assert not {"is_default", "deleted_at", "status"} & set(down["columns"])
        assert [columns for _, columns in down["unique"]] == [("firm_id", "account_type")]
        if database_url.startswith("postgresql"):
            assert down["unique"][0][0] == "settlement_accounts_firm_id_account_type_key"
        with database.session(read_only=True) as session:
            kept = session.execute(
                text("SELECT account_type FROM settlement_accounts ORDER BY account_type")
            ).scalars()
            assert list(kept) == ["Office", "Trust"]
        database.engine.dispose()

        upgrade_database(own_database_url)
        assert _settlement_account_keys(database) == migrated
        with database.session(read_only=True) as session:
            settles_to = invoices.get_invoice(session, partner.id, created.invoice_id)
            account = session.get_one(SettlementAccount, settles_to.settlement_account_id)
            assert (account.account_type, account.is_default, account.status) == (
                "Office",
                True,
                "Valid",
            )
            assert (account.account_holder_type, account.deleted_at) == ("company", None)
            assert account.updated_at == account.created_at
        second = _second_office_account(database, firm)
        written_by_0009 = _account_as_0009_writes_it(database, create_firm(database, partner))
        with database.session(read_only=True) as session:
            account = session.get_one(SettlementAccount, written_by_0009)
            assert (account.is_default, account.status, account.account_holder_type) == (
                True,
                "Valid",
                "company",
            )
            assert account.updated_at is not None
        database.engine.dispose()

        with pytest.raises(RuntimeError, match=rf"firm {firm.id}.* has 2 Office account"):
            command.downgrade(alembic_config(own_database_url), "0009")
        with database.session(read_only=True) as session:
            version = session.execute(text("SELECT version_num FROM alembic_version")).scalar()
            head = ScriptDirectory.from_config(alembic_config(own_database_url)).get_current_head()
            assert version == head  # the failed downgrade is undone whole
            assert session.get(SettlementAccount, second) is not None
        assert _settlement_account_keys(database) == migrated
    finally:
        database.dispose()


def test_a_migration_leaving_a_foreign_key_pointing_nowhere_changes_nothing(
    tmp_path: Path,
) -> None:
    """SQLite migrates with foreign keys off (a rebuilt table is dropped first) and checks
    them before it commits: a row whose key points nowhere fails the run, which is undone."""
    url = f"sqlite:///{tmp_path / 'broken.db'}"
    command.upgrade(alembic_config(url), "0009")
    with sqlite3.connect(tmp_path / "broken.db") as raw:
        raw.execute(
            "INSERT INTO matters (id, firm_id, external_id, details, updated_at) "
            "VALUES (?, ?, 'm-1', '{}', '2026-01-01 00:00:00')",
            (uuid.uuid4().hex, uuid.uuid4().hex),
        )

    with pytest.raises(RuntimeError, match=r"foreign keys point nowhere.*firms"):
        upgrade_database(url)
    with sqlite3.connect(tmp_path / "broken.db") as raw:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [("0009",)]
        columns = {row[1] for row in raw.execute("PRAGMA table_info(settlement_accounts)")}
    assert "is_default" not in columns
