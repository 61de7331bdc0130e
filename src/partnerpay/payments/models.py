import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from partnerpay.db import Base, new_id, same_instant_as_created_at, utcnow


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

    ``settlement_account_id`` is the account the payment was made to (its artifact's at the
    time: an unpaid artifact may be moved to another account later). ``fee_minor`` is the
    platform's fee for taking it, priced when it was made
    (:mod:`partnerpay.ledger.pricing`) and charged to the firm's Office account once it
    succeeds; a payment received elsewhere pays none.

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
    fee_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    settlement_account_id: Mapped[uuid.UUID | None]
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


class RefundStatus(StrEnum):
    """FeeWise's refund statuses. partnerpay sets ``Processing`` (the processor has taken
    the refund and not yet finished it), ``Complete`` and ``Failed``; ``Requested``,
    ``Clearing`` and the two cancellations are reserved (docs/payments.md)."""

    REQUESTED = "Requested"
    PROCESSING = "Processing"
    CLEARING = "Clearing"
    COMPLETE = "Complete"
    FAILED = "Failed"
    CANCELLED_INTERNAL = "CancelledInternal"
    CANCELLED_FIRM = "CancelledFirm"


# Refunds that give nothing back: every other refund holds its part of the payment.
VOID_REFUND_STATUSES = frozenset(
    {RefundStatus.FAILED, RefundStatus.CANCELLED_INTERNAL, RefundStatus.CANCELLED_FIRM}
)
# Refunds that count as refunded on the artifact: done, or under way at the processor.
REFUNDED_STATUSES = frozenset({RefundStatus.PROCESSING, RefundStatus.COMPLETE})
# Refunds whose outcome the gateway has still to give.
UNSETTLED_REFUND_STATUSES = frozenset({RefundStatus.PROCESSING})


class Refund(Base):
    """Money a payment took, given back through the gateway that took it, in part or in
    whole. ``refund_minor`` is what is refunded of the payment's amount and
    ``surcharge_minor`` the share of its surcharge returned with it; the gateway was asked
    to refund both together.

    ``artifact_id`` and ``artifact_type`` repeat the payment's, so that an artifact's
    refunds are read without its payments. ``idempotency_key`` (unique per payment) and
    ``request_fingerprint`` tell a retry from another request sent with the same key, as
    for payments; a refund made without a key has none. ``gateway`` and
    ``processor_reference`` name the refund at the processor (a Stripe Refund).
    """

    __tablename__ = "refunds"
    __table_args__ = (
        UniqueConstraint("payment_id", "idempotency_key"),
        Index("ix_refunds_artifact_id", "artifact_id"),
        Index("ix_refunds_status", "status"),
        Index("ix_refunds_processor_reference", "processor_reference"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"), index=True)
    artifact_id: Mapped[uuid.UUID]
    artifact_type: Mapped[str] = mapped_column(String(32))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    refund_minor: Mapped[int] = mapped_column(BigInteger)
    surcharge_minor: Mapped[int] = mapped_column(BigInteger)
    refund_reason: Mapped[str | None] = mapped_column(String(500))
    firm_notes: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32))
    gateway: Mapped[str] = mapped_column(String(16))
    processor_reference: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=same_instant_as_created_at)

    @property
    def total_minor(self) -> int:
        """What the gateway gives back: the refund and its share of the surcharge."""
        return self.refund_minor + self.surcharge_minor


class ProcessorEventRecord(Base):
    """A processor's notification already handled, by its id: the same notification
    again (processors deliver at least once) changes nothing."""

    __tablename__ = "processor_events"

    gateway: Mapped[str] = mapped_column(String(16), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
