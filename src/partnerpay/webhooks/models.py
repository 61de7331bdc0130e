"""A partner's webhook subscriptions."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from partnerpay.db import Base, new_id, same_instant_as_created_at, utcnow


class WebhookStatus(StrEnum):
    ENABLED = "Enabled"
    DISABLED = "Disabled"


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
