"""What the payment page shows: the invoice, formatted for its currency's locale."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal
from sqlalchemy.orm import Session

from partnerpay.artifacts.models import ArtifactStatus, PaymentMethod
from partnerpay.firms.models import Firm, FirmStatus
from partnerpay.invoices.models import Invoice
from partnerpay.money import MINOR_UNITS_PER_MAJOR, to_minor
from partnerpay.payments.gateway import PaymentGateway
from partnerpay.payments.models import Payment
from partnerpay.payments.service import (
    allowed_methods,
    card_surcharge_minor,
    is_payable,
    processor_account,
)
from partnerpay.problems import ProblemError
from partnerpay.wire import parse_id

LOCALES = {"AUD": "en_AU", "NZD": "en_NZ", "GBP": "en_GB", "USD": "en_US", "CAD": "en_CA"}


def money(minor: int, currency: str) -> str:
    """``12345, "AUD"`` -> ``"$123.45"`` in the currency's home locale."""
    amount = Decimal(minor) / MINOR_UNITS_PER_MAJOR
    return format_currency(amount, currency, locale=LOCALES.get(currency, "en_AU"))


def long_date(value: datetime, currency: str) -> str:
    return format_date(value.date(), format="long", locale=LOCALES.get(currency, "en_AU"))


@dataclass(frozen=True)
class LineView:
    name: str
    description: str | None
    quantity: int
    tax: str | None
    amount: str


@dataclass(frozen=True)
class PageView:
    invoice_id: uuid.UUID
    firm_name: str
    debtor_name: str | None
    description: str | None
    reference: str | None
    lines: list[LineView]
    amount: str
    amount_due: str
    due_date: str | None
    state: str
    payable: bool
    methods: list[str]
    surcharge_percent: str | None
    card_surcharge: str | None
    card_total: str | None
    redirect_url: str | None
    processor_account: str | None


def _line_view(item: dict[str, Any], currency: str) -> LineView:
    name, description = item.get("name"), item.get("description")
    tax_rate = item.get("tax_rate")
    return LineView(
        name=name or description or "Item",
        description=description if name else None,
        quantity=item.get("quantity", 1),
        tax=f"{format_decimal(Decimal(tax_rate), locale='en')}%" if tax_rate else None,
        amount=money(to_minor(item["amount"]), currency),
    )


def _debtor_name(invoice: Invoice) -> str | None:
    debtor = invoice.debtor or {}
    full = " ".join(part for part in (debtor.get("first_name"), debtor.get("last_name")) if part)
    return debtor.get("name") or full or None


def _state(invoice: Invoice, firm: Firm) -> str:
    if firm.status != FirmStatus.ACTIVE and invoice.status not in (
        ArtifactStatus.PAID,
        ArtifactStatus.VOIDED,
    ):
        return "Unavailable"
    return str(invoice.status)


def processor_account_or_none(
    session: Session, invoice: Invoice, gateway: PaymentGateway
) -> str | None:
    """The gateway account the invoice's money is taken into; ``None`` where there is
    none (the page then says the invoice cannot be paid online)."""
    try:
        return processor_account(session, invoice, gateway)
    except ProblemError:
        return None


def page_view(session: Session, invoice_id: str, gateway: PaymentGateway) -> PageView | None:
    """The page of this invoice; ``None`` if there is none (a malformed id raises 404)."""
    invoice = session.get(Invoice, parse_id(invoice_id, "invoice"))
    if invoice is None:
        return None
    firm = session.get_one(Firm, invoice.firm_id)
    currency = invoice.currency
    due = invoice.amount_due_minor
    surcharge = card_surcharge_minor(invoice, firm, due)
    account = processor_account_or_none(session, invoice, gateway)
    payable = is_payable(invoice, firm) and (
        account is not None or not gateway.uses_processor_accounts
    )
    methods = allowed_methods(invoice, gateway)
    return PageView(
        invoice_id=invoice.id,
        firm_name=firm.trading_name,
        debtor_name=_debtor_name(invoice),
        description=invoice.description,
        reference=invoice.external_reference,
        lines=[_line_view(item, currency) for item in invoice.line_items],
        amount=money(invoice.amount_minor, currency),
        amount_due=money(due, currency),
        due_date=long_date(invoice.due_date, currency) if invoice.due_date else None,
        state=_state(invoice, firm),
        payable=payable,
        methods=[str(m) for m in methods],
        surcharge_percent=firm.surcharge_percent if surcharge else None,
        card_surcharge=money(surcharge, currency) if surcharge else None,
        card_total=money(due + surcharge, currency) if surcharge else None,
        redirect_url=invoice.payment_redirect_url,
        processor_account=account,
    )


@dataclass(frozen=True)
class ReceiptView:
    firm_name: str
    invoice_id: uuid.UUID
    payment_id: uuid.UUID
    description: str | None
    amount: str
    surcharge: str | None
    total: str
    method: str
    status: str
    paid_at: str
    amount_due: str


def receipt_view(session: Session, payment: Payment) -> ReceiptView:
    invoice = session.get_one(Invoice, payment.artifact_id)
    firm = session.get_one(Firm, invoice.firm_id)
    currency = payment.currency
    locale = LOCALES.get(currency, "en_AU")
    return ReceiptView(
        firm_name=firm.trading_name,
        invoice_id=invoice.id,
        payment_id=payment.id,
        description=invoice.description,
        amount=money(payment.amount_minor, currency),
        surcharge=money(payment.surcharge_minor, currency) if payment.surcharge_minor else None,
        total=money(payment.total_minor, currency),
        method=payment.method_detail or str(payment.method),
        status=payment.status,
        paid_at=format_datetime(payment.created_at, format="medium", locale=locale),
        amount_due=money(invoice.amount_due_minor, currency),
    )


METHOD_LABELS = {PaymentMethod.CARD: "Card", PaymentMethod.DIRECT_DEBIT: "Direct debit"}
