"""Invoices: the partner's create-or-update, reads, amount adjustments and voiding.

An invoice is an artifact: its status and what it was paid are set by
:mod:`partnerpay.artifacts.service`, its create-or-update is written by
:mod:`partnerpay.invoices.writes`. Create-or-update is keyed on (firm, ``external_id``) and
guarded by a unique constraint: concurrent first POSTs race to insert, one wins, and the
others find its row and update it in place, so a retried POST can never make a second
invoice.
"""

import uuid

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from partnerpay.artifacts import service as artifacts
from partnerpay.artifacts.models import ArtifactStatus
from partnerpay.artifacts.parties import stored_parties, stored_under_firm, with_stored_parties
from partnerpay.db import table_of
from partnerpay.events.models import Topic
from partnerpay.firms.models import AccountType
from partnerpay.firms.service import INVOICING_TERMS, InvoicingTerms, get_firm, require_active
from partnerpay.invoices.models import Invoice
from partnerpay.invoices.schemas import InvoiceIn, InvoiceOut
from partnerpay.invoices.writes import (
    BY_EXTERNAL_ID,
    CreatePath,
    InvoiceContent,
    Stored,
    Upsert,
    begin_read,
    with_event,
    write_upsert,
)
from partnerpay.money import to_minor
from partnerpay.pagination import Page, newest_first_page
from partnerpay.problems import ProblemError, conflict, not_found
from partnerpay.wire import parse_id


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


_INVOICES = table_of(Invoice)

# The firm's terms, the matter and debtor an invoice names as stored now, and whether the
# invoice exists, in one round trip, each in columns of its own name: each is unique per
# (firm, external id), so its join adds no rows.
_TERMS_AND_STORED = (
    with_stored_parties(INVOICING_TERMS)
    .add_columns(_INVOICES.c.id.label("invoice_id"))
    .outerjoin(_INVOICES, stored_under_firm(_INVOICES, "external_id"))
)


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
    first = rows[0]._mapping
    return Stored(terms, stored_parties(first), invoice_exists=first["invoice_id"] is not None)


def upsert_invoice(
    session: Session,
    partner_id: uuid.UUID,
    data: InvoiceIn,
    pay_base_url: str,
    *,
    path: CreatePath | None = None,
) -> InvoiceOut:
    """The invoice after a create-or-update, as the response and any event show it,
    written by ``path`` (by default the database's: see :mod:`partnerpay.invoices.writes`)."""
    path = path or CreatePath.default_for(session)
    begin_read(session, path)
    stored = _read_stored(session, partner_id, data)
    require_active(stored.terms)
    upsert = Upsert(partner_id, data, _content(stored.terms, data), stored)
    return write_upsert(session, upsert, path, pay_base_url)


# The reads are built once, as the writes are: building a statement (and its cache key) on
# every GET cost a tenth of a GET by external id and a twentieth of a GET by id
# (docs/performance.md).
_BY_ID = select(Invoice).where(Invoice.id == bindparam("invoice_id"))
_BY_ID_LOCKED = _BY_ID.with_for_update()


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
        BY_EXTERNAL_ID,
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
    status: ArtifactStatus | None,
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
) -> InvoiceOut:
    """Change an open invoice's total; it may not fall below what has been paid. Returns
    the invoice as it now is (and as its event, if it changed, shows it)."""
    invoice = get_invoice(session, partner_id, invoice_id, lock=True)
    if not artifacts.adjust_amount(invoice, new_amount):
        return InvoiceOut.of(invoice, pay_base_url)
    return with_event(session, invoice, Topic.INVOICE_UPDATED, pay_base_url)


def void_invoice(
    session: Session, partner_id: uuid.UUID, invoice_id: str, pay_base_url: str
) -> InvoiceOut:
    """Void an unpaid invoice; voiding a voided one changes nothing. Returns the invoice as
    it now is."""
    invoice = get_invoice(session, partner_id, invoice_id, lock=True)
    if not artifacts.void(invoice):
        return InvoiceOut.of(invoice, pay_base_url)
    return with_event(session, invoice, Topic.INVOICE_UPDATED, pay_base_url)
