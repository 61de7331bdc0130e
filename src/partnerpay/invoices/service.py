"""Invoices: the partner's create-or-update, reads, amount adjustments and voiding.

Create-or-update is keyed on (firm, ``external_id``) and guarded by a unique constraint:
concurrent first POSTs race to insert, one wins, and the others find its row and update
it in place, so a retried POST can never make a second invoice.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import CTE, ColumnElement, Select, Table, and_, bindparam, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from partnerpay.db import PerDialect, table_of, utcnow
from partnerpay.events.models import Topic
from partnerpay.events.outbox import (
    announced_event,
    emit_event,
    event_values,
    new_events_written,
)
from partnerpay.firms.models import AccountType, Firm
from partnerpay.firms.service import INVOICING_TERMS, InvoicingTerms, get_firm, require_active
from partnerpay.invoices.models import (
    FINAL_STATUSES,
    Debtor,
    Invoice,
    InvoiceStatus,
    Matter,
)
from partnerpay.invoices.schemas import InvoiceIn, InvoiceOut
from partnerpay.money import to_minor
from partnerpay.pagination import Page, newest_first_page
from partnerpay.problems import ProblemError, conflict, not_found
from partnerpay.wire import parse_id


@dataclass(frozen=True)
class InvoiceContent:
    """Everything a partner sets on an invoice, in the form it is stored."""

    columns: dict[str, Any]

    @classmethod
    def of(cls, invoice: Invoice) -> "InvoiceContent":
        return cls({name: getattr(invoice, name) for name in _CONTENT_COLUMNS})

    def apply_to(self, invoice: Invoice) -> None:
        for name, value in self.columns.items():
            setattr(invoice, name, value)


_CONTENT_COLUMNS = (
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


def _settlement_account(firm: InvoicingTerms, data: InvoiceIn) -> tuple[uuid.UUID, AccountType]:
    if data.settlement_account_id is not None:
        account_id: uuid.UUID | None = data.settlement_account_id
        named = f"settlement account '{data.settlement_account_id}'"
    else:
        account_id = firm.account_of_type(data.settlement_account or AccountType.OFFICE)
        named = f"a {data.settlement_account or AccountType.OFFICE} settlement account"
    if account_id is None or account_id not in firm.accounts:
        raise conflict("invalid_settlement_account", f"Firm '{firm.id}' has no {named}.")
    return account_id, firm.accounts[account_id]


def _content(firm: InvoicingTerms, data: InvoiceIn) -> InvoiceContent:
    dumped = data.model_dump(mode="json", exclude_none=True)
    account_id, account_type = _settlement_account(firm, data)
    return InvoiceContent(
        {
            "amount": data.amount,
            "amount_minor": to_minor(data.amount),
            "currency": data.currency or firm.currency,
            "due_date": data.due_date,
            "description": data.description,
            "external_reference": data.external_reference,
            "settlement_account_id": account_id,
            "settlement_account_type": account_type,
            "matter": dumped.get("matter"),
            "debtor": dumped.get("debtor"),
            "line_items": dumped.get("line_items", []),
            "notes": data.notes,
            "payment_methods_override": dumped.get("payment_methods_override"),
            "surcharge_choice_override": data.surcharge_choice_override.value,
            "payment_redirect_url": data.payment_redirect_url,
        }
    )


_FIRMS, _MATTERS, _DEBTORS = table_of(Firm), table_of(Matter), table_of(Debtor)
_INVOICES = table_of(Invoice)


def _stored(rows: Table, external_id_bound_as: str) -> ColumnElement[bool]:
    return and_(
        rows.c.firm_id == _FIRMS.c.id, rows.c.external_id == bindparam(external_id_bound_as)
    )


# The firm's terms, the matter and debtor an invoice names as stored now, and whether the
# invoice exists, in one round trip: each is unique per (firm, external id), so its join
# adds no rows.
_TERMS_AND_STORED = (
    INVOICING_TERMS.add_columns(
        _MATTERS.c.id, _MATTERS.c.details, _DEBTORS.c.id, _DEBTORS.c.details, _INVOICES.c.id
    )
    .outerjoin(_MATTERS, _stored(_MATTERS, "matter_external_id"))
    .outerjoin(_DEBTORS, _stored(_DEBTORS, "debtor_external_id"))
    .outerjoin(_INVOICES, _stored(_INVOICES, "external_id"))
)

StoredParties = dict[str, tuple[uuid.UUID, dict[str, Any]]]


@dataclass(frozen=True)
class Stored:
    """What a create-or-update finds: the firm's terms, the stored matter and debtor that
    the invoice names, by kind, and whether the invoice itself exists."""

    terms: InvoicingTerms
    parties: StoredParties
    invoice_exists: bool


def _read_stored(session: Session, partner_id: uuid.UUID, data: InvoiceIn) -> Stored:
    """404 unless the firm is this partner's."""
    rows = session.execute(
        _TERMS_AND_STORED,
        {
            "firm_id": data.firm_id,
            "partner_id": partner_id,
            "external_id": data.external_id,
            "matter_external_id": data.matter.external_id if data.matter else None,
            "debtor_external_id": data.debtor.external_id if data.debtor else None,
        },
    ).all()
    terms = InvoicingTerms.from_rows(data.firm_id, rows)
    if terms is None:
        raise not_found("firm", data.firm_id)
    matter_id, matter_details, debtor_id, debtor_details, invoice_id = rows[0][4:]
    parties: StoredParties = {}
    if matter_id is not None:
        parties["matter"] = (matter_id, matter_details)
    if debtor_id is not None:
        parties["debtor"] = (debtor_id, debtor_details)
    return Stored(terms, parties, invoice_exists=invoice_id is not None)


def _latest_details_kept(statement: Any) -> Any:
    """An ``INSERT`` of a matter or debtor that, when its (firm, external id) is stored
    already, gives that row the details sent instead."""
    sent = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=["firm_id", "external_id"],
        set_={"details": sent.details, "updated_at": sent.updated_at},
    )


def _upsert_party(model: type[Debtor] | type[Matter]) -> PerDialect[Any]:
    def build(insert: Callable[..., Any]) -> Any:
        statement = insert(table_of(model))
        return _latest_details_kept(statement).returning(statement.table.c.id)

    return PerDialect(build)


_UPSERT_PARTY = {Matter: _upsert_party(Matter), Debtor: _upsert_party(Debtor)}


def _save_party(
    session: Session,
    model: type[Debtor] | type[Matter],
    firm_id: uuid.UUID,
    details: dict[str, Any],
) -> uuid.UUID:
    """Insert this (firm, external id)'s row, or give it these details; return its id."""
    values = {
        "id": uuid.uuid4(),
        "firm_id": firm_id,
        "external_id": details["external_id"],
        "details": details,
        "updated_at": utcnow(),
    }
    party_id: uuid.UUID = session.execute(_UPSERT_PARTY[model].of(session), values).scalar_one()
    return party_id


PartyWrites = tuple[bool, bool]  # whether the matter's and the debtor's rows are written
_PARTY_MODELS: dict[str, type[Matter] | type[Debtor]] = {"matter": Matter, "debtor": Debtor}


def _planned_parties(
    content: InvoiceContent, stored: StoredParties
) -> tuple[dict[str, Any], PartyWrites]:
    """This invoice's matter and debtor ids (a new one for a party not stored yet), and
    whether each one's row must be written to hold the latest details.

    Unchanged details are only read: many invoices name the same debtor and matter, and
    rewriting their row each time would make those invoices queue on its lock."""
    ids: dict[str, Any] = {}
    writes: list[bool] = []
    for kind in _PARTY_MODELS:
        details = content.columns[kind]
        stored_id, stored_details = stored.get(kind, (None, None))
        ids[f"{kind}_id"] = (stored_id or uuid.uuid4()) if details else None
        writes.append(bool(details) and details != stored_details)
    return ids, (writes[0], writes[1])


def _party_ids(
    session: Session, firm_id: uuid.UUID, content: InvoiceContent, stored: StoredParties
) -> dict[str, Any]:
    """This invoice's matter and debtor ids, their rows written as :func:`_planned_parties`
    says, by upsert: a concurrent request may have inserted one since it was read."""
    ids, writes = _planned_parties(content, stored)
    for (kind, model), written in zip(_PARTY_MODELS.items(), writes, strict=True):
        if written:
            ids[f"{kind}_id"] = _save_party(session, model, firm_id, content.columns[kind])
    return ids


# The reads are built once, as the writes are: building a statement (and its cache key) on
# every GET cost a tenth of a GET by external id and a twentieth of a GET by id
# (docs/performance.md).
_BY_ID = select(Invoice).where(Invoice.id == bindparam("invoice_id"))
_BY_ID_LOCKED = _BY_ID.with_for_update()
_BY_EXTERNAL_ID = select(Invoice).where(
    Invoice.firm_id == bindparam("firm_id"),
    Invoice.external_id == bindparam("external_id"),
    Invoice.partner_id == bindparam("partner_id"),
)
_BY_EXTERNAL_ID_LOCKED = _BY_EXTERNAL_ID.with_for_update()


def _build_insert_unless_exists(insert: Callable[..., Any]) -> Any:
    invoices = table_of(Invoice)
    return (
        insert(invoices)
        .on_conflict_do_nothing(index_elements=["firm_id", "external_id"])
        .returning(invoices.c.id)
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


def _commit_with_event(
    session: Session, invoice: Invoice, topic: Topic, pay_base_url: str
) -> InvoiceOut:
    """Commit a change together with the event that reports it (the outbox); return the
    invoice as both show it."""
    session.flush()
    view = InvoiceOut.of(invoice, pay_base_url)
    emit_event(session, invoice.partner_id, topic, invoice.external_id, view.wire())
    session.commit()
    return view


def require_updatable(invoice: Invoice) -> None:
    if invoice.status in FINAL_STATUSES:
        raise conflict(
            "invoice_not_updatable",
            f"Invoice '{invoice.id}' is {invoice.status} and can no longer be changed.",
        )


_NEW_INVOICE_COLUMNS = (
    "id",
    "partner_id",
    "firm_id",
    "external_id",
    "status",
    "amount_paid_minor",
    "created_at",
    "updated_at",
    *_CONTENT_COLUMNS,
    "matter_id",
    "debtor_id",
)


def _party_written(kind: str) -> CTE:
    """A matter's or debtor's row with the latest details, under its planned id unless it
    is stored already (perhaps by a concurrent request a moment ago); it returns the id.

    An ``INSERT … SELECT``, whose columns are its own: an ``INSERT … VALUES`` or an
    ``UPDATE`` would also take every other parameter named like one of its columns, such
    as the invoice's ``id``, as a value to set."""
    parties = table_of(_PARTY_MODELS[kind])
    row = select(
        bindparam(f"{kind}_id", type_=parties.c.id.type),
        bindparam("firm_id", type_=parties.c.firm_id.type),
        bindparam(f"{kind}_external_id", type_=parties.c.external_id.type),
        bindparam(f"{kind}_details", type_=parties.c.details.type),
        bindparam("updated_at", type_=parties.c.updated_at.type),
    )
    columns = ["id", "firm_id", "external_id", "details", "updated_at"]
    written: postgresql.Insert = _latest_details_kept(
        postgresql.insert(parties).from_select(columns, row)
    )
    return written.returning(parties.c.id).cte(f"{kind}_written")


@cache
def _create_statement(writes: PartyWrites) -> Select[uuid.UUID, int]:
    """PostgreSQL: a new invoice, its matter and debtor rows where they must be written, its
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
    for kind, written in zip(_PARTY_MODELS, writes, strict=True):
        if written:
            values[f"{kind}_id"] = select(_party_written(kind).c.id).scalar_subquery()
    new_invoice = (
        postgresql.insert(_INVOICES)
        .values(values)
        .on_conflict_do_nothing(index_elements=["firm_id", "external_id"])
        .returning(_INVOICES.c.id)
        .cte("new_invoice")
    )
    return select(new_invoice.c.id, announced_event(Topic.INVOICE_CREATED, new_invoice))


def _party_params(content: InvoiceContent) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for kind in _PARTY_MODELS:
        if details := content.columns[kind]:
            params[f"{kind}_details"] = details
            params[f"{kind}_external_id"] = details["external_id"]
    return params


@dataclass(frozen=True)
class _Upsert:
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
            "status": InvoiceStatus.SUBMITTED,
            "amount_paid_minor": 0,
            "created_at": now,
            "updated_at": now,
            **self.content.columns,
            **party_ids,
        }


def _create_in_one_statement(
    session: Session, upsert: _Upsert, pay_base_url: str
) -> InvoiceOut | None:
    """PostgreSQL: a new invoice written by :func:`_create_statement` in autocommit mode;
    ``None`` if it exists."""
    party_ids, writes = _planned_parties(upsert.content, upsert.stored.parties)
    values = upsert.new_invoice_values(party_ids)
    view = InvoiceOut.of(Invoice(**values), pay_base_url)
    event = event_values(
        upsert.partner_id, Topic.INVOICE_CREATED, upsert.data.external_id, view.wire()
    )
    params = {**values, **_party_params(upsert.content), **event}
    written = session.execute(_create_statement(writes), params).first()
    if written is None:
        return None
    if written[1]:
        new_events_written(session)
    session.commit()
    return view


def upsert_invoice(
    session: Session, partner_id: uuid.UUID, data: InvoiceIn, pay_base_url: str
) -> InvoiceOut:
    """The invoice after a create-or-update, as the response and any event show it.

    On PostgreSQL a new invoice takes two round trips instead of five (docs/performance.md):
    what is stored is read in autocommit mode, then one statement writes the rest. An
    update is made in a transaction, as everything is on SQLite, where the read is the
    first statement of that transaction."""
    on_postgresql = session.get_bind().dialect.name == "postgresql"
    if on_postgresql:
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    stored = _read_stored(session, partner_id, data)
    require_active(stored.terms)
    upsert = _Upsert(partner_id, data, _content(stored.terms, data), stored)
    if on_postgresql:
        if not stored.invoice_exists:
            created = _create_in_one_statement(session, upsert, pay_base_url)
            if created is not None:
                return created
        session.rollback()  # nothing to undo; it ends autocommit mode for the transaction
    return _upsert_in_transaction(session, upsert, pay_base_url)


def _upsert_in_transaction(session: Session, upsert: _Upsert, pay_base_url: str) -> InvoiceOut:
    data, content = upsert.data, upsert.content
    party_ids = _party_ids(session, data.firm_id, content, upsert.stored.parties)
    values = upsert.new_invoice_values(party_ids)
    fresh = _insert_unless_exists(session, values)
    if fresh is not None:
        return _commit_with_event(session, fresh, Topic.INVOICE_CREATED, pay_base_url)
    invoice = session.scalars(
        _BY_EXTERNAL_ID_LOCKED,
        {"firm_id": data.firm_id, "external_id": data.external_id, "partner_id": upsert.partner_id},
    ).one()
    require_updatable(invoice)
    if InvoiceContent.of(invoice) == content:
        session.commit()
        return InvoiceOut.of(invoice, pay_base_url)
    _require_amount_covers_payments(invoice, content.columns["amount_minor"])
    content.apply_to(invoice)
    for column, value in party_ids.items():
        setattr(invoice, column, value)
    invoice.follow_amounts()
    invoice.updated_at = values["updated_at"]
    return _commit_with_event(session, invoice, Topic.INVOICE_UPDATED, pay_base_url)


def _require_amount_covers_payments(invoice: Invoice, amount_minor: int) -> None:
    if amount_minor < invoice.amount_paid_minor:
        raise conflict(
            "amount_below_paid",
            f"Invoice '{invoice.id}' has payments totalling more than the new amount.",
        )


def get_invoice(
    session: Session, partner_id: uuid.UUID, invoice_id: str | uuid.UUID, *, lock: bool = False
) -> Invoice:
    """One of this partner's invoices; another partner's is as unknown as a missing one."""
    invoice = session.scalars(
        _BY_ID_LOCKED if lock else _BY_ID, {"invoice_id": parse_id(invoice_id, "invoice")}
    ).one_or_none()
    if invoice is None or invoice.partner_id != partner_id:
        raise not_found("invoice", invoice_id)
    return invoice


def get_invoice_by_external_id(
    session: Session, partner_id: uuid.UUID, firm_id: str, external_id: str
) -> Invoice:
    invoice = session.scalars(
        _BY_EXTERNAL_ID,
        {
            "firm_id": parse_id(firm_id, "firm"),
            "external_id": external_id,
            "partner_id": partner_id,
        },
    ).one_or_none()
    if invoice is None:
        firm = get_firm(session, partner_id, firm_id)  # 404 if it is not this partner's
        raise ProblemError(
            404,
            "not_found",
            f"Firm '{firm.id}' has no invoice with external_id '{external_id}'.",
        )
    return invoice


def list_invoices(
    session: Session,
    partner_id: uuid.UUID,
    *,
    firm_id: uuid.UUID | None,
    status: InvoiceStatus | None,
    external_reference: str | None,
    limit: int,
    cursor: str | None,
) -> Page[Invoice]:
    statement = select(Invoice).where(Invoice.partner_id == partner_id)
    if firm_id is not None:
        statement = statement.where(Invoice.firm_id == firm_id)
    if status is not None:
        statement = statement.where(Invoice.status == status)
    if external_reference is not None:
        statement = statement.where(Invoice.external_reference == external_reference)
    return newest_first_page(
        session, statement, Invoice.created_at, Invoice.id, limit=limit, cursor=cursor
    )


def adjust_amount(
    session: Session, partner_id: uuid.UUID, invoice_id: str, new_amount: str, pay_base_url: str
) -> tuple[Invoice, bool]:
    """Change an open invoice's total; it may not fall below what has been paid."""
    invoice = get_invoice(session, partner_id, invoice_id, lock=True)
    require_updatable(invoice)
    if invoice.amount == new_amount:
        session.commit()
        return invoice, False
    amount_minor = to_minor(new_amount)
    _require_amount_covers_payments(invoice, amount_minor)
    invoice.amount, invoice.amount_minor = new_amount, amount_minor
    invoice.follow_amounts()
    invoice.updated_at = utcnow()
    _commit_with_event(session, invoice, Topic.INVOICE_UPDATED, pay_base_url)
    return invoice, True


def void_invoice(
    session: Session, partner_id: uuid.UUID, invoice_id: str, pay_base_url: str
) -> tuple[Invoice, bool]:
    """Void an unpaid invoice; voiding a voided one changes nothing."""
    invoice = get_invoice(session, partner_id, invoice_id, lock=True)
    if invoice.status == InvoiceStatus.VOIDED:
        session.commit()
        return invoice, False
    if invoice.status == InvoiceStatus.PAID or invoice.amount_paid_minor > 0:
        raise conflict(
            "invoice_not_voidable",
            f"Invoice '{invoice.id}' has payments and cannot be voided.",
        )
    invoice.status = InvoiceStatus.VOIDED
    invoice.updated_at = utcnow()
    _commit_with_event(session, invoice, Topic.INVOICE_UPDATED, pay_base_url)
    return invoice, True
