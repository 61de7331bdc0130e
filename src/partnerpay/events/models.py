"""The event outbox's rows: each event, written in the transaction of the change it
reports; the webhooks that subscribe to topics (managed through ``webhooks/``); and each
event's delivery to each webhook subscribed to its topic."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from partnerpay.db import Base, new_id, same_instant_as_created_at, utcnow


class Topic(StrEnum):
    INVOICE_CREATED = "invoice.created"
    INVOICE_UPDATED = "invoice.updated"
    FIRM_STATUS_UPDATED = "firm.status.updated"
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_REFUNDED = "payment.refunded"
    PAYOUT_CREATED = "payout.created"
    PAYOUT_UPDATED = "payout.updated"
    FIRM_BANK_ACCOUNT_CREATED = "firm.bank-account.created"
    FIRM_BANK_ACCOUNT_UPDATED = "firm.bank-account.updated"
    FIRM_BANK_ACCOUNT_DELETED = "firm.bank-account.deleted"


class WebhookStatus(StrEnum):
    ENABLED = "Enabled"
    DISABLED = "Disabled"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class Webhook(Base):
    """A partner's subscription: where to POST which topics, and how to sign them."""

    __tablename__ = "webhooks"
    __table_args__ = (UniqueConstraint("partner_id", "url", "events_key"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    url: Mapped[str] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(16))
    events: Mapped[list[str]] = mapped_column(JSON)
    events_key: Mapped[str] = mapped_column(String(255))
    authentication: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(64))
    failing_since: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=same_instant_as_created_at)


class WebhookEvent(Base):
    """An event, written in the transaction of the change it reports (the outbox).

    ``payload`` keeps the exact bytes of the envelope, so every attempt sends, and signs,
    the same body.
    """

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_partner_created", "partner_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    topic: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    deliveries: Mapped[list["WebhookDelivery"]] = relationship(
        lazy="selectin", order_by="WebhookDelivery.created_at", back_populates="event"
    )


class WebhookDelivery(Base):
    """One event on its way to one webhook, with its attempts so far.

    The job runner's webhook-delivery kind (``webhooks/tasks.py``) claims a due delivery by
    pushing ``next_attempt_at`` past the attempt's timeout (a lease), sends it outside any
    transaction, then records the outcome. If the process dies mid-attempt, the lease runs
    out and another runner tries again.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "webhook_id"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_events.id"))
    webhook_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_attempt_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    event: Mapped[WebhookEvent] = relationship(back_populates="deliveries")
