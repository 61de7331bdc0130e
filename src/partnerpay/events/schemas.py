"""The event log on the wire."""

import uuid
from typing import Any

from pydantic import Field

from partnerpay.events.models import DeliveryStatus, Topic
from partnerpay.wire import Timestamp, WireModel


class TopicList(WireModel):
    event_topics: list[Topic]


class DeliveryOut(WireModel):
    webhook_id: uuid.UUID
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None = None
    last_error: str | None = None
    last_attempt_at: Timestamp | None = None
    next_attempt_at: Timestamp | None = None


class EventOut(WireModel):
    webhook_event_id: uuid.UUID
    topic: Topic
    external_id: str | None = None
    status: DeliveryStatus
    created_at: Timestamp
    payload: dict[str, Any] = Field(description="The envelope, exactly as POSTed.")
    deliveries: list[DeliveryOut]


class EventFilters(WireModel):
    topic: Topic | None = None
    since: Timestamp | None = None
    since_webhook_event_id: uuid.UUID | None = None
    status: DeliveryStatus | None = None
    limit: int


class EventLog(WireModel):
    events: list[EventOut]
    has_more: bool
    filters: EventFilters


class EventResponse(WireModel):
    event: EventOut
