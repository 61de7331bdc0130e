"""A partner's webhook subscriptions: register, list, change, delete.

Where a URL may point is :mod:`partnerpay.webhooks.destinations`'s; events and their
deliveries are the outbox's (:mod:`partnerpay.events`).
"""

import base64
import secrets
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from partnerpay.config import Environment
from partnerpay.db import utcnow
from partnerpay.events.models import Topic, Webhook
from partnerpay.problems import conflict, invalid_field, not_found
from partnerpay.webhooks.destinations import DestinationRefusedError, check_destination
from partnerpay.webhooks.schemas import WebhookIn, WebhookUpdate
from partnerpay.wire import parse_id


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
        session.flush()  # the unique constraint decides; the request then rolls back
    except IntegrityError:
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
    """Its deliveries go with it (the foreign key cascades)."""
    webhook = get_webhook(session, partner_id, webhook_id)
    session.delete(webhook)
    session.flush()
