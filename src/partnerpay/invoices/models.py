import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from partnerpay.db import Base, new_id, same_instant_as_created_at, utcnow
from partnerpay.payments.models import ACCEPTED_STATUSES, Payment, PaymentStatus


class InvoiceStatus(StrEnum):
    DRAFT = "Draft"
    SUBMITTED = "Submitted"
    AUTHORISED = "Authorised"
    PAID = "Paid"
    VOIDED = "Voided"


FINAL_STATUSES = frozenset({InvoiceStatus.PAID, InvoiceStatus.VOIDED})


class PaymentMethod(StrEnum):
    CARD = "Card"
    DIRECT_DEBIT = "DirectDebit"


class SurchargeChoice(StrEnum):
    DEFAULT = "Default"
    CUSTOMER = "Customer"
    MERCHANT = "Merchant"


class FirmParty:
    """Kept once per (firm, the partner's external id), with the latest details sent."""

    __table_args__ = (UniqueConstraint("firm_id", "external_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    external_id: Mapped[str] = mapped_column(String(255))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Debtor(FirmParty, Base):
    """A firm's client."""

    __tablename__ = "debtors"


class Matter(FirmParty, Base):
    """A firm's matter (case)."""

    __tablename__ = "matters"


class Invoice(Base):
    """An invoice raised by a partner for one of its firms.

    ``matter`` and ``debtor`` keep what this invoice was raised with; the shared
    :class:`Matter` and :class:`Debtor` rows they point to hold the latest details.
    ``line_items`` are kept as sent, in order, in a JSON column: they are only ever written
    and read with their invoice, which is one row, written whole or not at all.
    """

    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("firm_id", "external_id"),
        Index("ix_invoices_partner_created", "partner_id", "created_at", "id"),
        Index("ix_invoices_partner_reference", "partner_id", "external_reference"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    external_id: Mapped[str] = mapped_column(String(255))
    amount: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    amount_paid_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    due_date: Mapped[datetime | None]
    description: Mapped[str | None] = mapped_column(Text)
    external_reference: Mapped[str | None] = mapped_column(String(255))
    settlement_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("settlement_accounts.id"))
    settlement_account_type: Mapped[str] = mapped_column(String(16))
    matter_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("matters.id"))
    debtor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("debtors.id"))
    matter: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    debtor: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    line_items: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    notes: Mapped[list[str] | None] = mapped_column(JSON)
    payment_methods_override: Mapped[list[str] | None] = mapped_column(JSON)
    surcharge_choice_override: Mapped[str] = mapped_column(String(16))
    payment_redirect_url: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=same_instant_as_created_at)

    payments: Mapped[list[Payment]] = relationship(order_by=Payment.created_at, viewonly=True)

    @property
    def amount_due_minor(self) -> int:
        return max(self.amount_minor - self.amount_paid_minor, 0)

    @property
    def accepted_payments(self) -> list[Payment]:
        """Payments that count: loaded only when there are some (every accepted payment
        adds to ``amount_paid_minor``), so an unpaid invoice costs no extra query."""
        if self.amount_paid_minor == 0:
            return []
        return [p for p in self.payments if p.status in ACCEPTED_STATUSES]

    def follow_amounts(self) -> None:
        """The invoice's state transition, made after any change to its amount or its
        payments, whichever path made it: ``Authorised`` while an accepted payment is
        still processing, ``Paid`` once nothing is due, else ``Submitted``.

        A ``Voided`` invoice stays voided. ``amount_paid_minor`` must be up to date, and
        ``payments`` too when some are accepted.
        """
        if self.status == InvoiceStatus.VOIDED:
            return
        if any(p.status == PaymentStatus.PROCESSING for p in self.accepted_payments):
            self.status = InvoiceStatus.AUTHORISED
        elif self.amount_due_minor == 0:
            self.status = InvoiceStatus.PAID
        else:
            self.status = InvoiceStatus.SUBMITTED
