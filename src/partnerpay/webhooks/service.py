"""Webhook subscriptions, the event outbox and the partner's event log.

Events are written by :func:`emit_event` in the caller's transaction, so an event exists
exactly when the change it reports was committed. One delivery row per subscribed
webhook is written with it; the job runner's webhook-delivery kind (``tasks.py``) sends
them.
"""

import base64
import json
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Insert,
    ScalarSelect,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    not_,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Uuid

from partnerpay.config import Environment
from partnerpay.db import UTCDateTime, table_of, utcnow
from partnerpay.jobs.wakers import announce, wake_after_commit
from partnerpay.problems import conflict, invalid_field, not_found
from partnerpay.webhooks.destinations import DestinationRefusedError, check_destination
from partnerpay.webhooks.models import (
    DeliveryStatus,
    Topic,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WebhookStatus,
)
from partnerpay.webhooks.schemas import WebhookIn, WebhookUpdate
from partnerpay.wire import format_timestamp, parse_id

# What new deliveries are announced on (partnerpay.jobs.wakers): it wakes the runners'
# webhook-delivery lanes, in this process after the commit and in others by NOTIFY.
NOTIFY_CHANNEL = "partnerpay_webhook_events"
DEFAULT_EVENT_WINDOW = timedelta(hours=24)


def _new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _events_key(topics: list[Topic]) -> str:
    return ",".join(sorted(set(topics)))


def _checked_url(url: str, env: Environment) -> str:
    try:
        check_destination(url, env)
    except DestinationRefusedError as refused:
        raise invalid_field("url", str(refused), "invalid_url") from None
    return url


def _save(session: Session, webhook: Webhook) -> Webhook:
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise conflict(
            "webhook_already_exists",
            f"A webhook for '{webhook.url}' with these events already exists.",
        ) from None
    return webhook


def create_webhook(
    session: Session, partner_id: uuid.UUID, data: WebhookIn, env: Environment
) -> Webhook:
    webhook = Webhook(
        partner_id=partner_id,
        name=data.name,
        description=data.description,
        url=_checked_url(data.url, env),
        status=data.status,
        events=sorted(set(data.events)),
        events_key=_events_key(data.events),
        authentication=data.authentication.model_dump() if data.authentication else None,
        secret=_new_secret(),
    )
    session.add(webhook)
    return _save(session, webhook)


def list_webhooks(session: Session, partner_id: uuid.UUID) -> list[Webhook]:
    return list(
        session.scalars(
            select(Webhook).where(Webhook.partner_id == partner_id).order_by(Webhook.created_at)
        )
    )


def get_webhook(session: Session, partner_id: uuid.UUID, webhook_id: str | uuid.UUID) -> Webhook:
    webhook = session.get(Webhook, parse_id(webhook_id, "webhook"))
    if webhook is None or webhook.partner_id != partner_id:
        raise not_found("webhook", webhook_id)
    return webhook


def update_webhook(
    session: Session, partner_id: uuid.UUID, data: WebhookUpdate, env: Environment
) -> Webhook:
    webhook = get_webhook(session, partner_id, data.webhook_id)
    sent = data.model_fields_set
    if data.name is not None:
        webhook.name = data.name
    if "description" in sent:
        webhook.description = data.description
    if data.url is not None:
        webhook.url = _checked_url(data.url, env)
    if data.events is not None:
        webhook.events = sorted(set(data.events))
        webhook.events_key = _events_key(data.events)
    if "authentication" in sent:
        webhook.authentication = data.authentication.model_dump() if data.authentication else None
    if data.status is not None and data.status != webhook.status:
        webhook.status = data.status
        webhook.failing_since = None
    webhook.updated_at = utcnow()
    return _save(session, webhook)


def delete_webhook(session: Session, partner_id: uuid.UUID, webhook_id: str) -> None:
    webhook = get_webhook(session, partner_id, webhook_id)
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id))
    session.delete(webhook)
    session.commit()


class new_uuid(FunctionElement[uuid.UUID]):  # noqa: N801  (an SQL function's name)
    """A random id made by the database, for rows inserted by ``INSERT ... SELECT``."""

    type = Uuid()
    inherit_cache = True


@compiles(new_uuid, "postgresql")
def _new_uuid_postgresql(_element: new_uuid, _compiler: Any, **_kw: Any) -> str:
    return "gen_random_uuid()"


@compiles(new_uuid, "sqlite")
def _new_uuid_sqlite(_element: new_uuid, _compiler: Any, **_kw: Any) -> str:
    return "lower(hex(randomblob(16)))"  # how the Uuid type stores ids in SQLite


def _subscribed_to(topic: Topic) -> ColumnElement[bool]:
    """The partner's (bound as ``partner_id``) enabled webhooks that subscribe to ``topic``
    (``events_key`` lists a webhook's topics, comma-separated)."""
    webhooks = table_of(Webhook)
    listed = (literal(",") + webhooks.c.events_key + literal(",")).contains(
        f",{topic},", autoescape=True
    )
    return and_(
        webhooks.c.partner_id == bindparam("partner_id", type_=Uuid()),
        webhooks.c.status == WebhookStatus.ENABLED.value,
        listed,
    )


def _deliveries_to_subscribers(topic: Topic, event: CTE | None = None) -> Insert:
    """A pending delivery of an event to each subscriber of its topic, in one statement: no
    round trip to read the subscribers first. With ``event``, only if that CTE wrote it."""
    webhooks = table_of(Webhook)
    now = bindparam("now", type_=UTCDateTime())
    subscribers = select(
        new_uuid(),
        bindparam("event_id", type_=Uuid()),
        webhooks.c.id,
        literal(DeliveryStatus.PENDING.value),
        literal(0),
        now,
        now,
    ).where(_subscribed_to(topic))
    if event is not None:
        subscribers = subscribers.where(exists(event.select()))
    # SQLAlchemy reads an INSERT's rowcount only when asked to keep it (SQLite's path
    # reads it; on PostgreSQL, announced_event counts the deliveries itself).
    return (
        insert(table_of(WebhookDelivery))
        .from_select(
            ["id", "event_id", "webhook_id", "status", "attempts", "next_attempt_at", "created_at"],
            subscribers,
        )
        .execution_options(preserve_rowcount=True)
    )


def _new_event(after: CTE | None = None) -> Insert:
    """The event row, its values bound by the names :func:`event_values` gives them and the
    deliveries' statement uses. With ``after``, once for each row that CTE returns."""
    events = table_of(WebhookEvent)
    row = select(
        bindparam("event_id", type_=Uuid()),
        bindparam("partner_id", type_=Uuid()),
        bindparam("topic", type_=events.c.topic.type),
        bindparam("external_id", type_=events.c.external_id.type),
        bindparam("payload", type_=events.c.payload.type),
        bindparam("now", type_=UTCDateTime()),
    )
    if after is not None:
        row = row.select_from(after)
    return insert(events).from_select(
        ["id", "partner_id", "topic", "external_id", "payload", "created_at"], row
    )


def announced_event(topic: Topic, after: CTE | None = None) -> ScalarSelect[int]:
    """PostgreSQL: a column for a ``SELECT`` that, as data-modifying CTEs of that statement,
    writes the event (bound as :func:`event_values` names its values; with ``after``, only
    if that CTE returns a row) and a delivery to each subscriber, and then wakes the
    dispatchers of every process with ``NOTIFY``. It reads 1 when it wrote a delivery, else
    0, and sends no ``NOTIFY`` then: an event nobody subscribes to needs no dispatcher.

    One round trip for what would otherwise be three."""
    event = _new_event(after).returning(table_of(WebhookEvent).c.id).cte("new_event")
    deliveries = (
        _deliveries_to_subscribers(topic, event)
        .returning(table_of(WebhookDelivery).c.id)
        .cte("new_deliveries")
    )
    # pg_notify is volatile, so PostgreSQL evaluates it for the one row the LIMIT keeps.
    notified = (
        select(func.pg_notify(NOTIFY_CHANNEL, "")).select_from(deliveries).limit(1).subquery()
    )
    return select(func.count()).select_from(notified).scalar_subquery()


_NEW_EVENT = _new_event()
_NEW_DELIVERIES = {topic: _deliveries_to_subscribers(topic) for topic in Topic}
# SQLite's WITH cannot hold an INSERT, so it writes the event and its deliveries in turn.
_ANNOUNCED_EVENT = {topic: select(announced_event(topic)) for topic in Topic}
_SUBSCRIBERS = {
    topic: select(table_of(Webhook).c.id).where(_subscribed_to(topic)) for topic in Topic
}


def _subscriber_ids(session: Session, partner_id: uuid.UUID, topic: Topic) -> list[uuid.UUID]:
    return list(session.scalars(_SUBSCRIBERS[topic], {"partner_id": partner_id}))


def new_events_written(session: Session) -> None:
    """Wake this process's webhook runners once this transaction commits (the statement
    that wrote the deliveries sent the NOTIFY for other processes)."""
    wake_after_commit(session, NOTIFY_CHANNEL)


def event_values(
    partner_id: uuid.UUID, topic: Topic, external_id: str | None, resource: dict[str, Any]
) -> dict[str, Any]:
    """A new event's values, bound by the names the event statements use."""
    now = utcnow()
    event_id = uuid.uuid4()
    envelope = {
        "event_type": topic.value,
        "event_id": str(event_id),
        "created_at": format_timestamp(now),
        "event": resource,
    }
    return {
        "event_id": event_id,
        "now": now,
        "partner_id": partner_id,
        "topic": topic.value,
        "external_id": external_id,
        "payload": json.dumps(envelope, separators=(",", ":")),
    }


def emit_event(
    session: Session,
    partner_id: uuid.UUID,
    topic: Topic,
    external_id: str | None,
    resource: dict[str, Any],
) -> None:
    """Record an event in the caller's transaction, with a delivery per subscriber.

    Plain inserts, not ORM objects: an event is written on every change, and the unit of
    work's bookkeeping for it cost more than the rest of a create (docs/performance.md)."""
    values = event_values(partner_id, topic, external_id, resource)
    if session.get_bind().dialect.name == "postgresql":
        if session.execute(_ANNOUNCED_EVENT[topic], values).scalar_one():
            new_events_written(session)
        return
    session.execute(_NEW_EVENT, values)
    if session.execute(_NEW_DELIVERIES[topic], values).rowcount:  # type: ignore[attr-defined]
        new_events_written(session)


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
    the loaded objects: on PostgreSQL a dispatcher may mark a delivery sent after this
    transaction read it as pending, and the ORM would then leave the unchanged-looking
    status out of its ``UPDATE`` (the redelivery would be lost)."""
    outbox_row = get_event(session, partner_id, event_id)
    now = utcnow()
    subscribers = _subscriber_ids(session, partner_id, Topic(outbox_row.topic))
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
    session.commit()
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
