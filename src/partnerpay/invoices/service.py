"""Invoices: the partner's create-or-update, reads, amount adjustments and voiding.

Create-or-update is keyed on (firm, ``external_id``) and guarded by a unique constraint:
concurrent first POSTs race to insert, one wins, and the others find its row and update
it in place, so a retried POST can never make a second invoice.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, and_, bindparam, select
from sqlalchemy.orm import Session

from partnerpay.db import PerDialect, table_of, utcnow
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
from partnerpay.webhooks.models import Topic
from partnerpay.webhooks.service import emit_event
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


def _stored_party(parties: Table, kind: str) -> ColumnElement[bool]:
    return and_(
        parties.c.firm_id == _FIRMS.c.id,
        parties.c.external_id == bindparam(f"{kind}_external_id"),
    )


# The firm's terms and the matter and debtor an invoice names, as stored now, in one round
# trip: a party is unique per (firm, external id), so its join adds no rows.
_TERMS_AND_PARTIES = (
    INVOICING_TERMS.add_columns(
        _MATTERS.c.id, _MATTERS.c.details, _DEBTORS.c.id, _DEBTORS.c.details
    )
    .outerjoin(_MATTERS, _stored_party(_MATTERS, "matter"))
    .outerjoin(_DEBTORS, _stored_party(_DEBTORS, "debtor"))
)

StoredParties = dict[str, tuple[uuid.UUID, dict[str, Any]]]


def _terms_and_stored_parties(
    session: Session, partner_id: uuid.UUID, data: InvoiceIn
) -> tuple[InvoicingTerms, StoredParties]:
    """The firm's invoicing terms (404 unless it is this partner's), and the stored
    matter and debtor that this invoice names, by kind."""
    rows = session.execute(
        _TERMS_AND_PARTIES,
        {
            "firm_id": data.firm_id,
            "partner_id": partner_id,
            "matter_external_id": data.matter.external_id if data.matter else None,
            "debtor_external_id": data.debtor.external_id if data.debtor else None,
        },
    ).all()
    terms = InvoicingTerms.from_rows(data.firm_id, rows)
    if terms is None:
        raise not_found("firm", data.firm_id)
    matter_id, matter_details, debtor_id, debtor_details = rows[0][4:]
    stored: StoredParties = {}
    if matter_id is not None:
        stored["matter"] = (matter_id, matter_details)
    if debtor_id is not None:
        stored["debtor"] = (debtor_id, debtor_details)
    return terms, stored


def _upsert_party(model: type[Debtor] | type[Matter]) -> PerDialect[Any]:
    def build(insert: Callable[..., Any]) -> Any:
        statement = insert(table_of(model))
        sent = statement.excluded
        return statement.on_conflict_do_update(
            index_elements=["firm_id", "external_id"],
            set_={"details": sent.details, "updated_at": sent.updated_at},
        ).returning(statement.table.c.id)

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


def _party_ids(
    session: Session, firm_id: uuid.UUID, content: InvoiceContent, stored: StoredParties
) -> dict[str, Any]:
    """Keep one matter and one debtor row per (firm, external id) with the latest details;
    the ids of this invoice's.

    Unchanged details are only read: many invoices name the same debtor and matter, and
    rewriting their row each time would make those invoices queue on its lock."""
    ids: dict[str, Any] = {}
    for kind, model in (("matter", Matter), ("debtor", Debtor)):
        details = content.columns[kind]
        if not details:
            ids[f"{kind}_id"] = None
        elif kind in stored and stored[kind][1] == details:
            ids[f"{kind}_id"] = stored[kind][0]
        else:
            ids[f"{kind}_id"] = _save_party(session, model, firm_id, details)
    return ids


def _locked_by_external_id(firm_id: uuid.UUID, external_id: str) -> Select[Invoice]:
    return (
        select(Invoice)
        .where(Invoice.firm_id == firm_id, Invoice.external_id == external_id)
        .with_for_update()
    )


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


def upsert_invoice(
    session: Session, partner_id: uuid.UUID, data: InvoiceIn, pay_base_url: str
) -> InvoiceOut:
    """The invoice after a create-or-update, as the response and any event show it."""
    firm, stored_parties = _terms_and_stored_parties(session, partner_id, data)
    require_active(firm)
    content = _content(firm, data)
    party_ids = _party_ids(session, firm.id, content, stored_parties)
    now = utcnow()
    fresh = _insert_unless_exists(
        session,
        {
            "id": uuid.uuid4(),
            "partner_id": partner_id,
            "firm_id": firm.id,
            "external_id": data.external_id,
            "status": InvoiceStatus.SUBMITTED,
            "amount_paid_minor": 0,
            "created_at": now,
            "updated_at": now,
            **content.columns,
            **party_ids,
        },
    )
    if fresh is not None:
        return _commit_with_event(session, fresh, Topic.INVOICE_CREATED, pay_base_url)
    invoice = session.scalars(_locked_by_external_id(firm.id, data.external_id)).one()
    require_updatable(invoice)
    if InvoiceContent.of(invoice) == content:
        session.commit()
        return InvoiceOut.of(invoice, pay_base_url)
    _require_amount_covers_payments(invoice, content.columns["amount_minor"])
    content.apply_to(invoice)
    for column, value in party_ids.items():
        setattr(invoice, column, value)
    invoice.updated_at = now
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
    invoice = session.get(Invoice, parse_id(invoice_id, "invoice"), with_for_update=lock)
    if invoice is None or invoice.partner_id != partner_id:
        raise not_found("invoice", invoice_id)
    return invoice


def get_invoice_by_external_id(
    session: Session, partner_id: uuid.UUID, firm_id: str, external_id: str
) -> Invoice:
    parsed_firm_id = parse_id(firm_id, "firm")
    invoice = session.scalars(
        select(Invoice).where(
            Invoice.firm_id == parsed_firm_id,
            Invoice.external_id == external_id,
            Invoice.partner_id == partner_id,
        )
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
