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
import queue
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session
from standardwebhooks import Webhook as Signer

from partnerpay.config import Settings
from partnerpay.db import Database, table_of, utcnow
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
# A dispatcher cycle (one write transaction) waits this long for more work to join it:
# woken by every commit and every finished attempt, it would otherwise run a transaction
# per event and compete with the API for the database's write slot (docs/performance.md).
LINGER_S = 0.02
USER_AGENT = "partnerpay-webhooks/1"


@dataclass(frozen=True)
class Attempt:
    """A claimed delivery, with everything needed to send it outside a transaction."""

    delivery_id: uuid.UUID
    number: int  # the delivery's attempts, counting this one
    event_id: uuid.UUID
    webhook_id: uuid.UUID
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
    """Take up to ``limit`` due deliveries of enabled webhooks and lease them (in the
    caller's transaction: it must commit before sending)."""
    now = utcnow()
    due = session.execute(
        select(
            WebhookDelivery.id,
            WebhookDelivery.attempts,
            WebhookDelivery.event_id,
            WebhookDelivery.webhook_id,
            WebhookEvent.payload,
            Webhook.url,
            Webhook.secret,
            Webhook.authentication,
            Webhook.status,
        )
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookEvent.created_at)
        .limit(limit)
        .with_for_update(of=WebhookDelivery, skip_locked=True)
    ).all()
    attempts = [
        Attempt(
            row.id,
            row.attempts + 1,
            row.event_id,
            row.webhook_id,
            row.payload,
            row.url,
            row.secret,
            row.authentication,
        )
        for row in due
        if row.status == WebhookStatus.ENABLED
    ]
    _update_deliveries(
        session,
        [row.id for row in due if row.status != WebhookStatus.ENABLED],
        status=DeliveryStatus.FAILED,
        next_attempt_at=None,
        last_error="the webhook is disabled",
    )
    _update_deliveries(
        session,
        [attempt.delivery_id for attempt in attempts],
        attempts=WebhookDelivery.attempts + 1,
        last_attempt_at=now,
        next_attempt_at=now + lease,
    )
    return attempts


def _update_deliveries(session: Session, ids: list[uuid.UUID], **values: Any) -> None:
    if ids:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(ids))
            .values(**values)
            .execution_options(synchronize_session=False)
        )


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


def record_outcomes(
    session: Session, finished: list[tuple[Attempt, Outcome]], settings: Settings
) -> int:
    """Record what attempts came to (in the caller's transaction); how many deliveries
    failed for good. Successes, nearly all of them, are recorded in two statements.

    An outcome only counts while its delivery is still pending on that attempt: a delivery
    redelivered (or deleted) since it was claimed keeps its newer state."""
    sent = [(attempt, outcome) for attempt, outcome in finished if outcome.succeeded]
    if sent:
        deliveries = table_of(WebhookDelivery)
        session.execute(
            update(deliveries)
            .where(
                deliveries.c.id == bindparam("delivery_id"),
                deliveries.c.attempts == bindparam("number"),
                deliveries.c.status == DeliveryStatus.PENDING,
            )
            .values(
                status=DeliveryStatus.SENT,
                last_status_code=bindparam("status_code"),
                last_error=None,
                next_attempt_at=None,
            ),
            [
                {
                    "delivery_id": attempt.delivery_id,
                    "number": attempt.number,
                    "status_code": outcome.status_code,
                }
                for attempt, outcome in sent
            ],
        )
        _mark_webhooks_healthy(session, {attempt.webhook_id for attempt, _ in sent})
    return sum(
        _record_failure(session, attempt, outcome, settings) == DeliveryStatus.FAILED
        for attempt, outcome in finished
        if not outcome.succeeded
    )


def _record_failure(
    session: Session, attempt: Attempt, outcome: Outcome, settings: Settings
) -> DeliveryStatus | None:
    """Schedule the next retry, or give up; note the webhook as failing. The delivery's
    status after it (None when the outcome no longer counts)."""
    delivery = session.get(WebhookDelivery, attempt.delivery_id, with_for_update=True)
    if (
        delivery is None
        or delivery.attempts != attempt.number
        or delivery.status != DeliveryStatus.PENDING
    ):
        return None
    now = utcnow()
    delivery.last_status_code, delivery.last_error = outcome.status_code, outcome.error
    delays = settings.retry_delays
    if delivery.attempts > len(delays):
        delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
    else:
        delivery.next_attempt_at = now + timedelta(seconds=delays[delivery.attempts - 1])
    session.flush()
    _mark_webhook_failing(session, delivery.webhook_id, now, settings.webhook_disable_after)
    return DeliveryStatus(delivery.status)


def _mark_webhooks_healthy(session: Session, webhook_ids: set[uuid.UUID]) -> None:
    session.execute(
        update(Webhook)
        .where(Webhook.id.in_(webhook_ids), Webhook.failing_since.is_not(None))
        .values(failing_since=None)
        .execution_options(synchronize_session=False)
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


def _per_webhook(attempts: list[Attempt]) -> list[list[Attempt]]:
    """A batch's attempts by webhook, each in the order claimed: one webhook's events are
    sent one after another, so they arrive in order (unless a retry overtakes)."""
    grouped: dict[uuid.UUID, list[Attempt]] = {}
    for attempt in attempts:
        grouped.setdefault(attempt.webhook_id, []).append(attempt)
    return list(grouped.values())


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
        self._finished: queue.SimpleQueue[tuple[Attempt, Outcome]] = queue.SimpleQueue()
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
        with self.database.session() as session:
            self._record_finished(session)
            session.commit()

    def run(self) -> None:
        while not self._stopping.wait(LINGER_S):
            self._wake.clear()
            try:
                claimed = self._claim_and_send()
                if not claimed:
                    self._sleep_until_due()
            except Exception:
                logger.exception("webhook dispatcher loop failed; retrying")
                self._stopping.wait(self.settings.webhook_poll_interval)

    def _claim_and_send(self) -> int:
        """One write transaction: record the attempts that have finished, claim more."""
        free = self._acquire_free_slots()
        with self.database.session() as session:
            self._record_finished(session)
            attempts = claim_due(session, free, self.lease) if free else []
            session.commit()
        for _ in range(free - len(attempts)):
            self._slots.release()
        for in_order in _per_webhook(attempts):
            self._executor.submit(self._attempt_each, in_order)
        return len(attempts)

    def _attempt_each(self, attempts: list[Attempt]) -> None:
        for attempt in attempts:
            self._attempt(attempt)

    def _record_finished(self, session: Session) -> None:
        finished = []
        while not self._finished.empty():
            finished.append(self._finished.get_nowait())
        if finished:
            WEBHOOK_FAILURES.inc(record_outcomes(session, finished, self.settings))

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
        """Send, and hand the outcome to the loop, which records it with others."""
        try:
            outcome = send(self._client, attempt, self.settings)
            WEBHOOK_ATTEMPTS.labels("success" if outcome.succeeded else "failure").inc()
            self._finished.put((attempt, outcome))
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
