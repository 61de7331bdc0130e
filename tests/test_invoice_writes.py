"""The create-or-update's two write paths (``partnerpay.invoices.writes``): the portable
transaction and PostgreSQL's one statement write the same rows and the same event.

On PostgreSQL both are run, the portable one forced; on SQLite only the portable one is.
"""

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from partnerpay.artifacts.models import Debtor, Matter
from partnerpay.config import Environment
from partnerpay.db import Database
from partnerpay.events.models import Topic, WebhookDelivery, WebhookEvent
from partnerpay.invoices import service
from partnerpay.invoices.models import Invoice
from partnerpay.invoices.schemas import InvoiceIn
from partnerpay.invoices.writes import CreatePath
from partnerpay.webhooks.schemas import WebhookIn
from partnerpay.webhooks.service import create_webhook
from tests.receiver import Receiver
from tests.support import Firm, invoice_body

PAY_BASE_URL = "http://pay.test"
# What differs between any two new invoices, whichever path wrote them.
OWN = {"id", "external_id", "created_at", "updated_at", "matter_id", "debtor_id"}
OWN_ON_THE_WIRE = {"invoice_id", "external_id", "payment_uri", "created_at", "updated_at"}


def paths_of(database_url: str) -> list[CreatePath]:
    if database_url.startswith("postgresql"):
        return [CreatePath.TRANSACTION, CreatePath.ONE_STATEMENT]
    return [CreatePath.TRANSACTION]


def _without_own_ids(resource: dict[str, Any]) -> dict[str, Any]:
    kept = {key: value for key, value in resource.items() if key not in OWN_ON_THE_WIRE}
    for party in ("matter", "debtor"):
        kept[party] = {**kept[party], "external_id": "-"}
    return kept


def _written(database: Database, invoice_id: uuid.UUID, external_id: str) -> dict[str, Any]:
    """What a create wrote, less what is each invoice's own: the invoice's row, its matter
    and debtor rows, its event and how many deliveries that event has."""
    with database.session(read_only=True) as session:
        invoice = session.get_one(Invoice, invoice_id)
        row = {c.key: getattr(invoice, c.key) for c in Invoice.__table__.columns}
        matter = session.get_one(Matter, invoice.matter_id)
        debtor = session.get_one(Debtor, invoice.debtor_id)
        assert (matter.details, debtor.details) == (invoice.matter, invoice.debtor)
        event = session.scalars(
            select(WebhookEvent).where(
                WebhookEvent.partner_id == invoice.partner_id,
                WebhookEvent.external_id == external_id,
            )
        ).one()
        deliveries = session.scalar(
            select(func.count()).where(WebhookDelivery.event_id == event.id)
        )
    envelope = json.loads(event.payload)
    assert envelope["event"]["invoice_id"] == str(invoice_id)
    return {
        "invoice": {
            key: value for key, value in row.items() if key not in OWN | {"matter", "debtor"}
        },
        "parties": [
            (party.firm_id, {**party.details, "external_id": "-"}) for party in (matter, debtor)
        ],
        "topic": event.topic,
        "event": _without_own_ids(envelope["event"]),
        "deliveries": deliveries,
    }


def test_both_create_paths_write_the_same_rows_and_event(
    database_url: str, database: Database, firm: Firm, receiver: Receiver
) -> None:
    with database.unit_of_work() as session:
        subscription = {"name": "writes", "url": receiver.url, "events": ["invoice.created"]}
        create_webhook(
            session, firm.partner.id, WebhookIn.model_validate(subscription), Environment.SANDBOX
        )
    guide = invoice_body(firm)
    written = {}
    for path in paths_of(database_url):
        new_parties = {
            party: {**guide[party], "external_id": f"{party}-{path}-{uuid.uuid4()}"}
            for party in ("matter", "debtor")
        }
        body = invoice_body(firm, **new_parties)
        with database.unit_of_work() as session:
            view = service.upsert_invoice(
                session, firm.partner.id, InvoiceIn.model_validate(body), PAY_BASE_URL, path=path
            )
        written[path] = _written(database, view.invoice_id, body["external_id"])
        assert written[path]["event"] == _without_own_ids(view.wire())
    first = written[CreatePath.TRANSACTION]
    assert first["topic"] == Topic.INVOICE_CREATED
    assert first["deliveries"] == 1
    assert first["invoice"]["status"] == "Submitted"
    for path, rows in written.items():
        assert rows == first, path


def test_the_one_statement_path_is_postgresql_only(
    database_url: str, database: Database, firm: Firm
) -> None:
    if database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL takes both paths")
    body = InvoiceIn.model_validate(invoice_body(firm))
    with database.session() as session, pytest.raises(AssertionError, match="WITH"):
        service.upsert_invoice(
            session, firm.partner.id, body, PAY_BASE_URL, path=CreatePath.ONE_STATEMENT
        )


def test_an_update_takes_the_transaction_whichever_path_is_asked(
    database_url: str, database: Database, firm: Firm
) -> None:
    """A create-or-update of a stored invoice is an update, which only the transaction
    writes: the one-statement path hands it over, and the update is the same."""
    for path in paths_of(database_url):
        body = invoice_body(firm)
        with database.unit_of_work() as session:
            created = service.upsert_invoice(
                session, firm.partner.id, InvoiceIn.model_validate(body), PAY_BASE_URL
            )
        changed = InvoiceIn.model_validate({**body, "amount": "99.5"})
        with database.unit_of_work() as session:
            updated = service.upsert_invoice(
                session, firm.partner.id, changed, PAY_BASE_URL, path=path
            )
        assert updated.invoice_id == created.invoice_id, path
        assert (updated.amount, updated.amount_due, updated.status) == (
            "99.5",
            "99.50",
            "Submitted",
        )
        assert updated.updated_at >= created.updated_at
