import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from partnerpay.db import Base, new_id, utcnow


class PaymentStatus(StrEnum):
    SUCCESSFUL = "Successful"
    PROCESSING = "Processing"
    REQUIRES_ACTION = "RequiresAction"
    FAILED = "Failed"


ACCEPTED_STATUSES = frozenset({PaymentStatus.SUCCESSFUL, PaymentStatus.PROCESSING})
# Payments whose outcome the gateway has still to give.
UNSETTLED_STATUSES = frozenset({PaymentStatus.PROCESSING, PaymentStatus.REQUIRES_ACTION})


class Payment(Base):
    """A payment attempt on an artifact (an invoice): by the payer on the payment page, or
    recorded by the partner for money received elsewhere. Declined attempts are kept too
    (``Failed``) so that a repeated idempotency key gets the same answer.

    ``artifact_type`` says which kind of artifact ``artifact_id`` names; while invoices are
    the only kind, ``artifact_id`` is also a foreign key to them (migration 0006 says how
    charges will be referenced).

    ``gateway`` names the gateway that took it (``None`` for a payment received
    elsewhere), ``processor_reference`` is that gateway's id of it (a Stripe PaymentIntent)
    and ``processor_account`` the gateway account it was taken into. A payment that
    ``RequiresAction`` waits for the payer (3-D Secure) and counts for nothing yet.

    Only the card's brand and last four digits are kept (in ``method_detail``);
    ``request_fingerprint`` is a keyed hash of the request that made the payment (see
    :mod:`partnerpay.payments.fingerprints`), so that a retry can be told from another
    request sent with the same key without keeping the card number.
    """

    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("artifact_id", "idempotency_key"),
        Index("ix_payments_status", "status"),
        Index("ix_payments_processor_reference", "processor_reference"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    transaction_id: Mapped[uuid.UUID] = mapped_column(default=new_id)
    artifact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("invoices.id"), index=True)
    artifact_type: Mapped[str] = mapped_column(String(32))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(16))
    payment_type: Mapped[str] = mapped_column(String(100))
    method_detail: Mapped[str | None] = mapped_column(String(100))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    surcharge_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    decline_code: Mapped[str | None] = mapped_column(String(50))
    external_id: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[str | None] = mapped_column(Text)
    gateway: Mapped[str | None] = mapped_column(String(16))
    processor_reference: Mapped[str | None] = mapped_column(String(255))
    processor_account: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    settled_at: Mapped[datetime | None]

    @property
    def total_minor(self) -> int:
        return self.amount_minor + self.surcharge_minor


class ProcessorEventRecord(Base):
    """A processor's notification already handled, by its id: the same notification
    again (processors deliver at least once) changes nothing."""

    __tablename__ = "processor_events"

    gateway: Mapped[str] = mapped_column(String(16), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
