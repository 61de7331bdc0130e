"""The webhook dispatcher: claims due deliveries, sends them, records what happened.

It runs as a thread inside ``partnerpay serve`` and alone as ``partnerpay worker``. Any
number of dispatchers can share one database: a delivery is claimed in a short
transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite lets one writer in at a
time), which moves its ``next_attempt_at`` past the attempt's timeout, so no other
dispatcher takes it while the attempt is under way. A new event wakes dispatchers at
once (in-process, and through ``LISTEN``/``NOTIFY`` on PostgreSQL); retries are woken by
their due time.
"""

from __future__ import annotations

import base64
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import psycopg
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from standardwebhooks import Webhook as Signer

from partnerpay.config import Settings
from partnerpay.db import Database, utcnow
from partnerpay.observability import WEBHOOK_ATTEMPTS, WEBHOOK_FAILURES
from partnerpay.webhooks.destinations import DestinationRefusedError, check_destination
from partnerpay.webhooks.models import (
    DeliveryStatus,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WebhookStatus,
)
from partnerpay.webhooks.service import NOTIFY_CHANNEL, on_new_events

logger = logging.getLogger(__name__)

LEASE_MARGIN_S = 5.0
USER_AGENT = "partnerpay-webhooks/1"


@dataclass(frozen=True)
class Attempt:
    """A claimed delivery, with everything needed to send it outside a transaction."""

    delivery_id: uuid.UUID
    event_id: uuid.UUID
    payload: str
    url: str
    secret: str
    authentication: dict[str, Any] | None


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def claim_due(session: Session, limit: int, lease: timedelta) -> list[Attempt]:
    """Take up to ``limit`` due deliveries of enabled webhooks and lease them."""
    now = utcnow()
    deliveries = list(
        session.scalars(
            select(WebhookDelivery)
            .where(
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.next_attempt_at <= now,
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    webhooks = _by_id(session, Webhook, {d.webhook_id for d in deliveries})
    events = _by_id(session, WebhookEvent, {d.event_id for d in deliveries})
    attempts = []
    for delivery in deliveries:
        webhook = webhooks[delivery.webhook_id]
        if webhook.status != WebhookStatus.ENABLED:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
            delivery.last_error = "the webhook is disabled"
            continue
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.next_attempt_at = now + lease
        attempts.append(
            Attempt(
                delivery_id=delivery.id,
                event_id=delivery.event_id,
                payload=events[delivery.event_id].payload,
                url=webhook.url,
                secret=webhook.secret,
                authentication=webhook.authentication,
            )
        )
    session.commit()
    return attempts


Row = TypeVar("Row", Webhook, WebhookEvent)


def _by_id(session: Session, model: type[Row], ids: set[uuid.UUID]) -> dict[uuid.UUID, Row]:
    if not ids:
        return {}
    return {row.id: row for row in session.scalars(select(model).where(model.id.in_(ids)))}


def next_due_in(session: Session) -> float | None:
    """Seconds until the earliest pending delivery is due (0 if one is due now)."""
    earliest = session.scalar(
        select(func.min(WebhookDelivery.next_attempt_at)).where(
            WebhookDelivery.status == DeliveryStatus.PENDING
        )
    )
    session.rollback()
    if earliest is None:
        return None
    return max((earliest - utcnow()).total_seconds(), 0.0)


def authorization_header(authentication: dict[str, Any] | None) -> dict[str, str]:
    if not authentication:
        return {}
    data = authentication["data"]
    if authentication["type"] == "basic":
        credentials = f"{data['username']}:{data['password']}".encode()
        return {"Authorization": "Basic " + base64.b64encode(credentials).decode()}
    return {"Authorization": f"Bearer {data['token']}"}


def signed_headers(attempt: Attempt, sent_at: datetime) -> dict[str, str]:
    """Standard Webhooks headers; ``webhook-id`` is the event id, the same on every retry."""
    message_id = str(attempt.event_id)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Signer(attempt.secret).sign(message_id, sent_at, attempt.payload),
        **authorization_header(attempt.authentication),
    }


def send(client: httpx.Client, attempt: Attempt, settings: Settings) -> Outcome:
    try:
        check_destination(attempt.url, settings.env)
        response = client.post(
            attempt.url,
            content=attempt.payload.encode(),
            headers=signed_headers(attempt, datetime.now(UTC)),
        )
    except DestinationRefusedError as refused:
        return Outcome(status_code=None, error=f"destination refused: {refused}")
    except httpx.HTTPError as error:
        return Outcome(status_code=None, error=f"{type(error).__name__}: {error}"[:500])
    return Outcome(status_code=response.status_code, error=None)


def record_outcome(
    session: Session, delivery_id: uuid.UUID, outcome: Outcome, settings: Settings
) -> DeliveryStatus | None:
    """Record an attempt's outcome; the delivery's status after it (None if it is gone)."""
    delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
    if delivery is None:  # the webhook was deleted while the attempt was under way
        session.rollback()
        return None
    now = utcnow()
    delivery.last_status_code, delivery.last_error = outcome.status_code, outcome.error
    if outcome.succeeded:
        delivery.status, delivery.next_attempt_at = DeliveryStatus.SENT, None
        _mark_webhook_healthy(session, delivery.webhook_id)
    else:
        delays = settings.retry_delays
        if delivery.attempts > len(delays):
            delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
        else:
            delivery.next_attempt_at = now + timedelta(seconds=delays[delivery.attempts - 1])
        _mark_webhook_failing(session, delivery.webhook_id, now, settings.webhook_disable_after)
    status = DeliveryStatus(delivery.status)
    session.commit()
    return status


def _mark_webhook_healthy(session: Session, webhook_id: uuid.UUID) -> None:
    session.execute(
        update(Webhook)
        .where(Webhook.id == webhook_id, Webhook.failing_since.is_not(None))
        .values(failing_since=None)
    )


def _mark_webhook_failing(
    session: Session, webhook_id: uuid.UUID, now: datetime, disable_after: float
) -> None:
    """Note when a webhook started failing; disable it once it has failed for long enough."""
    session.execute(
        update(Webhook)
        .where(Webhook.id == webhook_id, Webhook.failing_since.is_(None))
        .values(failing_since=now)
    )
    disabled = session.execute(
        update(Webhook)
        .where(
            Webhook.id == webhook_id,
            Webhook.status == WebhookStatus.ENABLED,
            Webhook.failing_since <= now - timedelta(seconds=disable_after),
        )
        .values(status=WebhookStatus.DISABLED, updated_at=now)
    )
    if disabled.rowcount:  # type: ignore[attr-defined]
        logger.warning("webhook %s disabled: every delivery failed for too long", webhook_id)
        session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.webhook_id == webhook_id,
                WebhookDelivery.status == DeliveryStatus.PENDING,
            )
            .values(
                status=DeliveryStatus.FAILED, next_attempt_at=None, last_error="webhook disabled"
            )
        )


class Dispatcher:
    """Sends webhooks with up to ``webhook_concurrency`` attempts under way at once."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings
        self.lease = timedelta(seconds=settings.webhook_timeout + LEASE_MARGIN_S)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._slots = threading.Semaphore(settings.webhook_concurrency)
        self._executor = ThreadPoolExecutor(
            settings.webhook_concurrency, thread_name_prefix="webhook-send"
        )
        self._client = httpx.Client(
            timeout=settings.webhook_timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=settings.webhook_concurrency),
        )
        self._threads: list[threading.Thread] = []
        self._unsubscribe = on_new_events(self._wake.set)

    def start(self) -> None:
        self._spawn(self.run, "webhook-dispatcher")
        if self.database.engine.dialect.name == "postgresql":
            self._spawn(self._listen, "webhook-listener")

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming, and let the attempts under way finish."""
        self._stopping.set()
        self._wake.set()
        self._unsubscribe()
        for thread in self._threads:
            thread.join(timeout)
        self._executor.shutdown(wait=True)
        self._client.close()

    def run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                claimed = self._claim_and_send()
                if not claimed:
                    self._sleep_until_due()
            except Exception:
                logger.exception("webhook dispatcher loop failed; retrying")
                self._stopping.wait(self.settings.webhook_poll_interval)

    def _claim_and_send(self) -> int:
        free = self._acquire_free_slots()
        with self.database.session() as session:
            attempts = claim_due(session, free, self.lease) if free else []
        for _ in range(free - len(attempts)):
            self._slots.release()
        for attempt in attempts:
            self._executor.submit(self._attempt, attempt)
        return len(attempts)

    def _acquire_free_slots(self) -> int:
        if not self._slots.acquire(timeout=self.settings.webhook_poll_interval):
            return 0
        free = 1
        while self._slots.acquire(blocking=False):
            free += 1
        return free

    def _sleep_until_due(self) -> None:
        with self.database.session(read_only=True) as session:
            due_in = next_due_in(session)
        wait = self.settings.webhook_poll_interval
        if due_in is not None:
            wait = min(wait, due_in)
        if wait > 0:
            self._wake.wait(wait)

    def _attempt(self, attempt: Attempt) -> None:
        try:
            outcome = send(self._client, attempt, self.settings)
            WEBHOOK_ATTEMPTS.labels("success" if outcome.succeeded else "failure").inc()
            with self.database.session() as session:
                status = record_outcome(session, attempt.delivery_id, outcome, self.settings)
            if status == DeliveryStatus.FAILED:
                WEBHOOK_FAILURES.inc()
        except Exception:
            logger.exception("webhook delivery %s could not be recorded", attempt.delivery_id)
        finally:
            self._slots.release()
            self._wake.set()

    def _listen(self) -> None:
        """Wake on PostgreSQL NOTIFY from other processes' commits."""
        url = self.database.engine.url.set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        while not self._stopping.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as connection:
                    connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    while not self._stopping.is_set():
                        for _ in connection.notifies(timeout=1.0, stop_after=1):
                            self._wake.set()
            except psycopg.Error:
                logger.exception("webhook listener lost its connection; reconnecting")
                self._stopping.wait(1.0)
