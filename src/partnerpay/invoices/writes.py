"""How a create-or-update is written, by one of two paths side by side:

- :attr:`CreatePath.TRANSACTION`, portable: the read of what is stored is the first
  statement of a transaction, then plain inserts (or the update); right on both databases,
  and the only path on SQLite, which has no round trips to save.
- :attr:`CreatePath.ONE_STATEMENT`, PostgreSQL's default for a new invoice: the read in
  autocommit mode, then one data-modifying ``WITH`` writes the matter and debtor where they
  changed, the invoice, its event and deliveries (two round trips instead of five,
  docs/performance.md). An update, or a create whose invoice a concurrent request inserted
  since the read, falls back to the transactional path.

Both write the same rows and the same ``invoice.created`` event; tests run both on
PostgreSQL.
"""

import uuid
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from partnerpay.artifacts import service as artifacts
from partnerpay.artifacts.models import ArtifactStatus
from partnerpay.artifacts.parties import (
    PARTY_MODELS,
    PartyWrites,
    StoredParties,
    party_ids,
    party_params,
    party_written,
    planned_parties,
)
from partnerpay.db import PerDialect, table_of, utcnow
from partnerpay.events.models import Topic
from partnerpay.events.outbox import (
    announced_event,
    emit_event,
    event_values,
    new_events_written,
)
from partnerpay.firms.service import InvoicingTerms
from partnerpay.invoices.models import Invoice
from partnerpay.invoices.schemas import InvoiceIn, InvoiceOut


class CreatePath(StrEnum):
    TRANSACTION = "transaction"
    ONE_STATEMENT = "one_statement"

    @classmethod
    def default_for(cls, session: Session) -> "CreatePath":
        on_postgresql = session.get_bind().dialect.name == "postgresql"
        return cls.ONE_STATEMENT if on_postgresql else cls.TRANSACTION


CONTENT_COLUMNS = (
    "amount",
    "amount_minor",
    "currency",
    "due_date",
    "description",
    "external_reference",
    "settlement_account_id",
    "settlement_account_type",
    "matter",
    "debtor",
    "line_items",
    "notes",
    "payment_methods_override",
    "surcharge_choice_override",
    "payment_redirect_url",
)


@dataclass(frozen=True)
class InvoiceContent:
    """Everything a partner sets on an invoice, in the form it is stored."""

    columns: dict[str, Any]

    @classmethod
    def of(cls, invoice: Invoice) -> "InvoiceContent":
        return cls({name: getattr(invoice, name) for name in CONTENT_COLUMNS})


@dataclass(frozen=True)
class Stored:
    """What a create-or-update finds: the firm's terms, the stored matter and debtor that
    the invoice names, by kind, and whether the invoice itself exists."""

    terms: InvoicingTerms
    parties: StoredParties
    invoice_exists: bool


@dataclass(frozen=True)
class Upsert:
    """A create-or-update as read and checked, before anything is written."""

    partner_id: uuid.UUID
    data: InvoiceIn
    content: InvoiceContent
    stored: Stored

    def new_invoice_values(self, party_ids: dict[str, Any]) -> dict[str, Any]:
        now = utcnow()
        return {
            "id": uuid.uuid4(),
            "partner_id": self.partner_id,
            "firm_id": self.data.firm_id,
            "external_id": self.data.external_id,
            "status": ArtifactStatus.SUBMITTED,
            "amount_paid_minor": 0,
            "refunded_minor": 0,
            "created_at": now,
            "updated_at": now,
            **self.content.columns,
            **party_ids,
        }


def with_event(session: Session, invoice: Invoice, topic: Topic, pay_base_url: str) -> InvoiceOut:
    """Write a change and the event that reports it (the outbox) in the request's
    transaction; return the invoice as both show it."""
    session.flush()
    view = InvoiceOut.of(invoice, pay_base_url)
    emit_event(session, invoice.partner_id, topic, invoice.external_id, view.wire())
    return view


# --- the transactional path (portable) -------------------------------------------------

_INVOICES = table_of(Invoice)
BY_EXTERNAL_ID = select(Invoice).where(
    Invoice.firm_id == bindparam("firm_id"),
    Invoice.external_id == bindparam("external_id"),
    Invoice.partner_id == bindparam("partner_id"),
)
_BY_EXTERNAL_ID_LOCKED = BY_EXTERNAL_ID.with_for_update()


def _build_insert_unless_exists(insert: Any) -> Any:
    return (
        insert(_INVOICES)
        .on_conflict_do_nothing(index_elements=["firm_id", "external_id"])
        .returning(_INVOICES.c.id)
    )


_INSERT_UNLESS_EXISTS = PerDialect(_build_insert_unless_exists)


def _insert_unless_exists(session: Session, values: dict[str, Any]) -> Invoice | None:
    """Insert, or ``None`` if this (firm, external_id) exists, perhaps inserted a moment ago
    by a concurrent request: the unique constraint decides, in one statement.

    A plain insert: the invoice returned is built from the values written, not loaded
    back through the ORM (which cost a quarter of a create)."""
    if session.execute(_INSERT_UNLESS_EXISTS.of(session), values).first() is None:
        return None
    return Invoice(**values)


def upsert_in_transaction(session: Session, upsert: Upsert, pay_base_url: str) -> InvoiceOut:
    """Create or update in a transaction, which the read of what is stored began (or
    which this begins): an update locks the invoice and changes it through the artifact
    core; one that changes nothing changes nothing."""
    data, columns = upsert.data, upsert.content.columns
    ids = party_ids(session, data.firm_id, columns, upsert.stored.parties)
    fresh = _insert_unless_exists(session, upsert.new_invoice_values(ids))
    if fresh is not None:
        return with_event(session, fresh, Topic.INVOICE_CREATED, pay_base_url)
    invoice = session.scalars(
        _BY_EXTERNAL_ID_LOCKED,
        {"firm_id": data.firm_id, "external_id": data.external_id, "partner_id": upsert.partner_id},
    ).one()
    artifacts.require_updatable(invoice)
    if InvoiceContent.of(invoice) == upsert.content:
        return InvoiceOut.of(invoice, pay_base_url)
    artifacts.revise(invoice, {**columns, **ids})
    return with_event(session, invoice, Topic.INVOICE_UPDATED, pay_base_url)


# --- the one-statement path (PostgreSQL) -----------------------------------------------

_NEW_INVOICE_COLUMNS = (
    "id",
    "partner_id",
    "firm_id",
    "external_id",
    "status",
    "amount_paid_minor",
    "refunded_minor",
    "created_at",
    "updated_at",
    *CONTENT_COLUMNS,
    "matter_id",
    "debtor_id",
)


@cache
def _create_statement(writes: PartyWrites) -> Select[uuid.UUID, int]:
    """A new invoice, its matter and debtor rows where they must be written, its
    ``invoice.created`` event and that event's deliveries, in one statement, which
    PostgreSQL runs atomically without a transaction. It returns no row, and writes no
    event, when the invoice exists (inserted by a concurrent request since it was read);
    the update that follows writes the same matter and debtor. Built once for each
    combination of party writes.

    The invoice takes the ids its party rows return, so the matter and the debtor are
    written before it, in the order the transactional path writes them: two requests
    never wait for each other's locks in opposite orders."""
    values: dict[str, Any] = {
        name: bindparam(name, type_=_INVOICES.c[name].type) for name in _NEW_INVOICE_COLUMNS
    }
    for kind, written in zip(PARTY_MODELS, writes, strict=True):
        if written:
            values[f"{kind}_id"] = select(party_written(kind).c.id).scalar_subquery()
    new_invoice = (
        postgresql.insert(_INVOICES)
        .values(values)
        .on_conflict_do_nothing(index_elements=["firm_id", "external_id"])
        .returning(_INVOICES.c.id)
        .cte("new_invoice")
    )
    return select(new_invoice.c.id, announced_event(Topic.INVOICE_CREATED, new_invoice))


def create_in_one_statement(
    session: Session, upsert: Upsert, pay_base_url: str
) -> InvoiceOut | None:
    """A new invoice written by :func:`_create_statement`, the session in autocommit mode;
    ``None`` if it exists.

    The one exception to the request's unit of work: the statement is its own transaction,
    written when it returns (two round trips a create, docs/performance.md); the request's
    commit that follows sends nothing and wakes this process's runners."""
    assert session.get_bind().dialect.name == "postgresql", "SQLite's WITH cannot hold an INSERT"
    ids, writes = planned_parties(upsert.content.columns, upsert.stored.parties)
    values = upsert.new_invoice_values(ids)
    view = InvoiceOut.of(Invoice(**values), pay_base_url)
    event = event_values(
        upsert.partner_id, Topic.INVOICE_CREATED, upsert.data.external_id, view.wire()
    )
    params = {**values, **party_params(upsert.content.columns), **event}
    written = session.execute(_create_statement(writes), params).first()
    if written is None:
        return None
    if written[1]:
        new_events_written(session)
    return view


def write_upsert(
    session: Session, upsert: Upsert, path: CreatePath, pay_base_url: str
) -> InvoiceOut:
    """The create-or-update written by ``path`` (read as that path reads: in autocommit
    mode for :attr:`CreatePath.ONE_STATEMENT`)."""
    if path is CreatePath.ONE_STATEMENT:
        if not upsert.stored.invoice_exists:
            created = create_in_one_statement(session, upsert, pay_base_url)
            if created is not None:
                return created
        # Not a boundary: nothing was written (the read ran in autocommit mode); ending the
        # connection's autocommit mode gives the transactional path a transaction.
        session.rollback()
    return upsert_in_transaction(session, upsert, pay_base_url)


def begin_read(session: Session, path: CreatePath) -> None:
    """Ready the session for the read of what is stored, as ``path`` reads it."""
    if path is CreatePath.ONE_STATEMENT:
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
