"""The partner's event log, and redelivery."""

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, not_, select, tuple_, update
from sqlalchemy.orm import Session

from partnerpay.db import utcnow
from partnerpay.events.models import DeliveryStatus, Topic, WebhookDelivery, WebhookEvent
from partnerpay.events.outbox import NOTIFY_CHANNEL, subscriber_ids
from partnerpay.jobs.wakers import announce
from partnerpay.problems import invalid_field, not_found
from partnerpay.wire import parse_id

DEFAULT_EVENT_WINDOW = timedelta(hours=24)


def event_status(outbox_row: WebhookEvent) -> DeliveryStatus:
    """``pending`` while any delivery is, else ``failed`` if any failed, else ``sent``."""
    statuses = {delivery.status for delivery in outbox_row.deliveries}
    if DeliveryStatus.PENDING in statuses:
        return DeliveryStatus.PENDING
    return DeliveryStatus.FAILED if DeliveryStatus.FAILED in statuses else DeliveryStatus.SENT


def _has_delivery(status: DeliveryStatus) -> ColumnElement[bool]:
    return exists().where(
        WebhookDelivery.event_id == WebhookEvent.id, WebhookDelivery.status == status
    )


def _status_filter(status: DeliveryStatus) -> ColumnElement[bool]:
    pending, failed = _has_delivery(DeliveryStatus.PENDING), _has_delivery(DeliveryStatus.FAILED)
    if status == DeliveryStatus.PENDING:
        return pending
    if status == DeliveryStatus.FAILED:
        return and_(failed, not_(pending))
    return and_(not_(failed), not_(pending))


def list_events(
    session: Session,
    partner_id: uuid.UUID,
    *,
    topic: Topic | None,
    since: datetime | None,
    since_webhook_event_id: str | None,
    status: DeliveryStatus | None,
    limit: int,
) -> tuple[list[WebhookEvent], bool]:
    """This partner's events, oldest first: after an event (to resume a replay), or since
    a time (default: the last 24 hours)."""
    if since is not None and since_webhook_event_id is not None:
        raise invalid_field(
            "since_webhook_event_id", "cannot be combined with since; give one or the other"
        )
    statement: Select[WebhookEvent] = select(WebhookEvent).where(
        WebhookEvent.partner_id == partner_id
    )
    if since_webhook_event_id is not None:
        after = get_event(session, partner_id, since_webhook_event_id)
        position = tuple_(WebhookEvent.created_at, WebhookEvent.id)
        statement = statement.where(position > tuple_(after.created_at, after.id))
    else:
        statement = statement.where(
            WebhookEvent.created_at >= (since or utcnow() - DEFAULT_EVENT_WINDOW)
        )
    if topic is not None:
        statement = statement.where(WebhookEvent.topic == topic)
    if status is not None:
        statement = statement.where(_status_filter(status))
    rows = list(
        session.scalars(
            statement.order_by(WebhookEvent.created_at, WebhookEvent.id).limit(limit + 1)
        )
    )
    return rows[:limit], len(rows) > limit


def get_event(session: Session, partner_id: uuid.UUID, event_id: str | uuid.UUID) -> WebhookEvent:
    outbox_row = session.get(WebhookEvent, parse_id(event_id, "event"))
    if outbox_row is None or outbox_row.partner_id != partner_id:
        raise not_found("event", event_id)
    return outbox_row


def redeliver_event(session: Session, partner_id: uuid.UUID, event_id: str) -> WebhookEvent:
    """Queue the event again, from a first attempt, for every webhook subscribed to it now.

    Existing deliveries are reset by one ``UPDATE`` that names every column, not through
    the loaded objects: on PostgreSQL a runner may mark a delivery sent after this
    transaction read it as pending, and the ORM would then leave the unchanged-looking
    status out of its ``UPDATE`` (the redelivery would be lost)."""
    outbox_row = get_event(session, partner_id, event_id)
    now = utcnow()
    subscribers = subscriber_ids(session, partner_id, Topic(outbox_row.topic))
    session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.event_id == outbox_row.id,
            WebhookDelivery.webhook_id.in_(subscribers),
        )
        .values(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now)
    )
    existing = {delivery.webhook_id for delivery in outbox_row.deliveries}
    outbox_row.deliveries.extend(
        WebhookDelivery(
            webhook_id=webhook_id,
            status=DeliveryStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
        )
        for webhook_id in subscribers
        if webhook_id not in existing
    )
    announce(session, NOTIFY_CHANNEL)
    session.flush()
    return outbox_row


def envelope_of(outbox_row: WebhookEvent) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads(outbox_row.payload)
    return envelope


def count_backlog(session: Session) -> tuple[int, int]:
    """Pending deliveries: (due now, scheduled for later)."""
    now = utcnow()
    pending = WebhookDelivery.status == DeliveryStatus.PENDING
    due = session.scalar(
        select(func.count()).where(pending, WebhookDelivery.next_attempt_at <= now)
    )
    scheduled = session.scalar(
        select(func.count()).where(pending, WebhookDelivery.next_attempt_at > now)
    )
    return due or 0, scheduled or 0
