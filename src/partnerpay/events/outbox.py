"""The event outbox: an event is written in the transaction of the change it reports, with
a pending delivery to each of the partner's webhooks subscribed to its topic.

Every domain emits through :func:`emit_event`. PostgreSQL's one-statement writes (a new
invoice, its event and its deliveries at once) put :func:`announced_event` in their own
statement and bind :func:`event_values` beside their own values: every parameter the event
statements take is named ``event_...``, so no other statement's names can collide with them.
"""

import json
import uuid
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Insert,
    ScalarSelect,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Uuid

from partnerpay.db import UTCDateTime, table_of, utcnow
from partnerpay.events.models import (
    DeliveryStatus,
    Topic,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WebhookStatus,
)
from partnerpay.jobs.wakers import wake_after_commit
from partnerpay.wire import format_timestamp

# What new deliveries are announced on (partnerpay.jobs.wakers): it wakes the runners'
# webhook-delivery lanes, in this process after the commit and in others by NOTIFY.
NOTIFY_CHANNEL = "partnerpay_webhook_events"


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
        webhooks.c.partner_id == bindparam("event_partner_id", type_=Uuid()),
        webhooks.c.status == WebhookStatus.ENABLED.value,
        listed,
    )


def _deliveries_to_subscribers(topic: Topic, event: CTE | None = None) -> Insert:
    """A pending delivery of an event to each subscriber of its topic, in one statement: no
    round trip to read the subscribers first. With ``event``, only if that CTE wrote it."""
    webhooks = table_of(Webhook)
    now = bindparam("event_created_at", type_=UTCDateTime())
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
        bindparam("event_partner_id", type_=Uuid()),
        bindparam("event_topic", type_=events.c.topic.type),
        bindparam("event_external_id", type_=events.c.external_id.type),
        bindparam("event_payload", type_=events.c.payload.type),
        bindparam("event_created_at", type_=UTCDateTime()),
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
    runners of every process with ``NOTIFY``. It reads 1 when it wrote a delivery, else
    0, and sends no ``NOTIFY`` then: an event nobody subscribes to needs no runner.

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


def subscriber_ids(session: Session, partner_id: uuid.UUID, topic: Topic) -> list[uuid.UUID]:
    """The partner's enabled webhooks subscribed to ``topic``."""
    return list(session.scalars(_SUBSCRIBERS[topic], {"event_partner_id": partner_id}))


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
        "event_created_at": now,
        "event_partner_id": partner_id,
        "event_topic": topic.value,
        "event_external_id": external_id,
        "event_payload": json.dumps(envelope, separators=(",", ":")),
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
