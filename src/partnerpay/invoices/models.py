from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, Index, String, Text, UniqueConstraint, and_, select
from sqlalchemy.orm import Mapped, foreign, mapped_column, relationship

from partnerpay.artifacts.models import Artifact, ArtifactType
from partnerpay.db import Base
from partnerpay.ledger.models import LedgerEntry, PayoutEntry
from partnerpay.payments.models import (
    ACCEPTED_STATUSES,
    REFUNDED_STATUSES,
    Payment,
    PaymentStatus,
    Refund,
)


class Invoice(Artifact, Base):
    """An invoice raised by a partner for one of its firms: an artifact (the shared
    columns, status and rules are :mod:`partnerpay.artifacts`') with an invoice's own
    content.

    ``line_items`` are kept as sent, in order, in a JSON column: they are only ever written
    and read with their invoice, which is one row, written whole or not at all.
    """

    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("firm_id", "external_id"),
        Index("ix_invoices_partner_created", "partner_id", "created_at", "id"),
        Index("ix_invoices_partner_reference", "partner_id", "external_reference"),
    )

    artifact_type: ClassVar[ArtifactType] = ArtifactType.INVOICE

    due_date: Mapped[datetime | None]
    description: Mapped[str | None] = mapped_column(Text)
    external_reference: Mapped[str | None] = mapped_column(String(255))
    line_items: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    notes: Mapped[list[str] | None] = mapped_column(JSON)
    payment_redirect_url: Mapped[str | None] = mapped_column(String(2048))

    payments: Mapped[list[Payment]] = relationship(order_by=Payment.created_at, viewonly=True)
    refunds: Mapped[list[Refund]] = relationship(
        primaryjoin="foreign(Refund.artifact_id) == Invoice.id", viewonly=True
    )
    paid_out_entries: Mapped[list[LedgerEntry]] = relationship(
        primaryjoin=lambda: and_(
            foreign(LedgerEntry.artifact_id) == Invoice.id,
            LedgerEntry.id.in_(select(PayoutEntry.entry_id)),
        ),
        viewonly=True,
    )

    @property
    def accepted_payments(self) -> list[Payment]:
        """Payments that count: loaded only when there are some (every accepted payment
        adds to ``amount_paid_minor``), so an unpaid invoice costs no extra query."""
        if self.amount_paid_minor == 0:
            return []
        return [p for p in self.payments if p.status in ACCEPTED_STATUSES]

    def refunded_minor_of(self, payment: Payment) -> int:
        """What of a payment has been refunded (refunds done or under way): the refunds are
        loaded only when there are some (``refunded_minor``), so an invoice nothing was
        refunded of costs no extra query."""
        if self.refunded_minor == 0:
            return 0
        return sum(
            refund.refund_minor
            for refund in self.refunds
            if refund.payment_id == payment.id and refund.status in REFUNDED_STATUSES
        )

    def paid_out_minor_of(self, payment: Payment) -> int:
        """What of a payment has been paid out to the firm, over every account its money
        went to (its amount, surcharge and fee, less its refunds): read from the ledger
        only for a payment the gateway took."""
        if payment.gateway is None:
            return 0
        return sum(
            entry.amount_minor for entry in self.paid_out_entries if entry.payment_id == payment.id
        )

    @property
    def clearing(self) -> bool:
        """Whether an accepted payment is still clearing (a direct debit not yet settled)."""
        return any(p.status == PaymentStatus.PROCESSING for p in self.accepted_payments)
