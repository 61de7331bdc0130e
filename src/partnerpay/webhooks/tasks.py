"""The webhook dispatcher: claims due deliveries, sends them, records what happened.

It runs as a thread inside ``partnerpay serve`` and alone as ``partnerpay worker``. Any
number of dispatchers can share one database: a delivery is claimed in a short
transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite lets one writer in at a
time), which moves its ``next_attempt_at`` past the attempt's timeout, so no other
dispatcher takes it while the attempt is under way. One webhook's share of a batch is sent
one attempt after another, so an attempt that cannot start soon enough to finish inside its
lease is handed back unsent rather than sent late. No webhook has more than half of a
dispatcher's attempts under way, so a receiver that stalls leaves the other half to the
rest. A new event wakes dispatchers at
once (in-process, and through ``LISTEN``/``NOTIFY`` on PostgreSQL); retries are woken by
their due time.
"""

from __future__ import annotations

import base64
import logging
import queue
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import httpcore
import httpx
import psycopg
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session
from standardwebhooks import Webhook as Signer

from partnerpay.config import Environment, Settings
from partnerpay.db import Database, plain_postgres_connection, table_of, utcnow
from partnerpay.observability import WEBHOOK_ATTEMPTS, WEBHOOK_FAILURES
from partnerpay.webhooks.destinations import (
    AddressPolicy,
    CheckedBackend,
    DestinationRefusedError,
    address_policy,
    parse_webhook_url,
)
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
# An attempt starts within this long of its claim or is handed back: started later, it could
# outlast its lease (the timeout plus the margin) before its outcome is recorded, and another
# dispatcher would send it again. It matters when one webhook's share of a batch waits
# behind a slow receiver.
START_WITHIN_S = LEASE_MARGIN_S / 2
# A dispatcher cycle (one write transaction) waits this long for more work to join it:
# woken by every commit and every finished attempt, it would otherwise run a transaction
# per event and compete with the API for the database's write slot (docs/performance.md).
LINGER_S = 0.02
USER_AGENT = "partnerpay-webhooks/1"


@dataclass(frozen=True)
class Attempt:
    """A claimed delivery, with everything needed to send it outside a transaction, and
    the delivery's schedule before the claim, which a hand back restores."""

    delivery_id: uuid.UUID
    number: int  # the delivery's attempts, counting this one
    claimed_at: datetime  # the delivery's last_attempt_at from this claim on: its lease's mark
    start_by: float  # time.monotonic(): send by then or hand back
    due_at: datetime
    previous_attempt_at: datetime | None
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
    sent: bool = True

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


NOT_SENT = Outcome(status_code=None, error=None, sent=False)

# The dispatcher's statements are built once: it runs them many times a second, and
# building a statement cost more than running it (docs/performance.md).
_DUE = (
    select(
        WebhookDelivery.id,
        WebhookDelivery.attempts,
        WebhookDelivery.next_attempt_at,
        WebhookDelivery.last_attempt_at,
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
        WebhookDelivery.next_attempt_at <= bindparam("now"),
        WebhookDelivery.webhook_id.not_in(bindparam("full", expanding=True)),
    )
    .order_by(WebhookDelivery.next_attempt_at, WebhookEvent.created_at)
    .limit(bindparam("limit"))
    .with_for_update(of=WebhookDelivery, skip_locked=True)
)
_EARLIEST_DUE = select(func.min(WebhookDelivery.next_attempt_at)).where(
    WebhookDelivery.status == DeliveryStatus.PENDING,
    WebhookDelivery.webhook_id.not_in(bindparam("full", expanding=True)),
)
_deliveries = table_of(WebhookDelivery)
_LEASE = (
    update(_deliveries)
    .where(_deliveries.c.id.in_(bindparam("ids", expanding=True)))
    .values(
        attempts=_deliveries.c.attempts + 1,
        last_attempt_at=bindparam("now"),
        next_attempt_at=bindparam("lease_until"),
    )
)
_FAIL_DISABLED = (
    update(_deliveries)
    .where(_deliveries.c.id.in_(bindparam("ids", expanding=True)))
    .values(
        status=DeliveryStatus.FAILED, next_attempt_at=None, last_error="the webhook is disabled"
    )
)
# An attempt's outcome only counts while its delivery is still pending on that attempt. The
# claim's time tells the attempt from a later one of the same number (a redelivery starts
# the count again).
_ON_ATTEMPT = update(_deliveries).where(
    _deliveries.c.id == bindparam("delivery_id"),
    _deliveries.c.attempts == bindparam("number"),
    _deliveries.c.last_attempt_at == bindparam("claimed_at"),
    _deliveries.c.status == DeliveryStatus.PENDING,
)
_MARK_SENT = _ON_ATTEMPT.values(
    status=DeliveryStatus.SENT,
    last_status_code=bindparam("status_code"),
    last_error=None,
    next_attempt_at=None,
)
_HAND_BACK = _ON_ATTEMPT.values(
    attempts=_deliveries.c.attempts - 1,
    next_attempt_at=bindparam("due_at"),
    last_attempt_at=bindparam("previous_attempt_at"),
)
_webhooks = table_of(Webhook)
_MARK_HEALTHY = (
    update(_webhooks)
    .where(
        _webhooks.c.id.in_(bindparam("ids", expanding=True)),
        _webhooks.c.failing_since.is_not(None),
    )
    .values(failing_since=None)
)


def full_webhooks(under_way: Mapping[uuid.UUID, int], per_webhook: int) -> list[uuid.UUID]:
    """The webhooks with as many attempts under way as one may have."""
    return [webhook_id for webhook_id, count in under_way.items() if count >= per_webhook]


def claim_due(
    session: Session,
    limit: int,
    lease: timedelta,
    under_way: Mapping[uuid.UUID, int] | None = None,
    per_webhook: int | None = None,
) -> list[Attempt]:
    """Take up to ``limit`` due deliveries of enabled webhooks and lease them (in the
    caller's transaction: it must commit before sending), no more of one webhook's than
    bring its attempts ``under_way`` to ``per_webhook``. A delivery left out for that stays
    due, unleased, for a later claim."""
    counts = Counter(under_way or {})
    per_webhook = per_webhook or limit
    now, start_by = utcnow(), time.monotonic() + START_WITHIN_S
    full = full_webhooks(counts, per_webhook)
    due = session.execute(_DUE, {"now": now, "limit": limit, "full": full}).all()
    attempts = []
    for row in due:
        if row.status != WebhookStatus.ENABLED or counts[row.webhook_id] >= per_webhook:
            continue
        counts[row.webhook_id] += 1
        attempts.append(
            Attempt(
                row.id,
                row.attempts + 1,
                now,
                start_by,
                row.next_attempt_at,
                row.last_attempt_at,
                row.event_id,
                row.webhook_id,
                row.payload,
                row.url,
                row.secret,
                row.authentication,
            )
        )
    disabled = [row.id for row in due if row.status != WebhookStatus.ENABLED]
    if disabled:
        session.execute(_FAIL_DISABLED, {"ids": disabled})
    if attempts:
        session.execute(
            _LEASE,
            {
                "ids": [attempt.delivery_id for attempt in attempts],
                "now": now,
                "lease_until": now + lease,
            },
        )
    return attempts


def next_due_in(session: Session, full: list[uuid.UUID] | None = None) -> float | None:
    """Seconds until the earliest pending delivery of a webhook not ``full`` is due (0 if
    one is due now)."""
    earliest = session.scalar(_EARLIEST_DUE, {"full": full or []})
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


class FailureKind(StrEnum):
    """What a failed attempt came to: the whole of ``last_error`` in production, so that
    the event log tells a partner nothing about a network it cannot see (no port scans)."""

    TIMEOUT = "timeout"
    CONNECTION_FAILED = "connection_failed"
    TLS_ERROR = "tls_error"
    HTTP_STATUS = "http_status"
    DESTINATION_REFUSED = "destination_refused"


def failure_kind(error: Exception) -> FailureKind:
    if isinstance(error, DestinationRefusedError):
        return FailureKind.DESTINATION_REFUSED
    if isinstance(error, httpcore.TimeoutException):
        return FailureKind.TIMEOUT
    if _raised_from(error, ssl.SSLError):
        return FailureKind.TLS_ERROR
    return FailureKind.CONNECTION_FAILED


def _raised_from(error: BaseException | None, kind: type[BaseException]) -> bool:
    """Whether ``error`` or an error it was raised from or during is a ``kind``
    (httpcore re-raises its errors ``from None``, so the context is followed too)."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, kind):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


class Sender:
    """POSTs webhooks through an httpcore connection pool, not an httpx client: a webhook
    needs none of a client's cookies, redirects or auth flows, which cost a quarter of
    every send (docs/performance.md). A redirect is a failure, as it should be. Its network
    backend connects only to addresses the destination check accepted in the same lookup.

    :meth:`send` never raises: whatever goes wrong is the attempt's failed outcome."""

    def __init__(self, settings: Settings, allowed: AddressPolicy | None = None) -> None:
        self._detailed = settings.env != Environment.PRODUCTION
        self._timeout = httpx.Timeout(settings.webhook_timeout).as_dict()
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=settings.webhook_concurrency,
            network_backend=CheckedBackend(allowed or address_policy(settings.env)),
        )

    def send(self, attempt: Attempt) -> Outcome:
        try:
            status = self._post(attempt)
        except Exception as error:
            if not isinstance(error, DestinationRefusedError | httpcore.NetworkError):
                logger.exception("webhook %s: attempt failed unexpectedly", attempt.webhook_id)
            return self._failed(failure_kind(error), f"{type(error).__name__}: {error}")
        if 200 <= status < 300:
            return Outcome(status_code=status, error=None)
        return Outcome(status, self._described(FailureKind.HTTP_STATUS, f"HTTP {status}"))

    def _post(self, attempt: Attempt) -> int:
        url = parse_webhook_url(attempt.url)
        request = httpx.Request(
            "POST",
            url,
            content=attempt.payload.encode(),
            headers=signed_headers(attempt, datetime.now(UTC)),
        )
        response = self._pool.request(
            "POST",
            httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.content,
            extensions={"timeout": self._timeout},
        )
        return response.status

    def _failed(self, kind: FailureKind, detail: str) -> Outcome:
        return Outcome(status_code=None, error=self._described(kind, detail))

    def _described(self, kind: FailureKind, detail: str) -> str:
        """The error the event log shows: the kind, and in sandbox what exactly happened."""
        return f"{kind}: {detail}"[:500] if self._detailed else str(kind)

    def close(self) -> None:
        self._pool.close()


def _attempt_key(attempt: Attempt) -> dict[str, Any]:
    """The parameters by which :data:`_ON_ATTEMPT` finds the attempt's delivery."""
    return {
        "delivery_id": attempt.delivery_id,
        "number": attempt.number,
        "claimed_at": attempt.claimed_at,
    }


def record_outcomes(
    session: Session, finished: list[tuple[Attempt, Outcome]], settings: Settings
) -> int:
    """Record what attempts came to (in the caller's transaction); how many deliveries
    failed for good. Successes, nearly all of them, are recorded in two statements; an
    attempt handed back unsent gets its delivery's schedule back, in one.

    An outcome only counts while its delivery is still pending on that attempt: a delivery
    redelivered (or deleted) since it was claimed keeps its newer state."""
    handed_back = [attempt for attempt, outcome in finished if not outcome.sent]
    if handed_back:
        session.execute(
            _HAND_BACK,
            [
                {
                    **_attempt_key(attempt),
                    "due_at": attempt.due_at,
                    "previous_attempt_at": attempt.previous_attempt_at,
                }
                for attempt in handed_back
            ],
        )
    sent = [(attempt, outcome) for attempt, outcome in finished if outcome.succeeded]
    if sent:
        session.execute(
            _MARK_SENT,
            [
                {**_attempt_key(attempt), "status_code": outcome.status_code}
                for attempt, outcome in sent
            ],
        )
        session.execute(_MARK_HEALTHY, {"ids": list({attempt.webhook_id for attempt, _ in sent})})
    return sum(
        _record_failure(session, attempt, outcome, settings) == DeliveryStatus.FAILED
        for attempt, outcome in finished
        if outcome.sent and not outcome.succeeded
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
        or delivery.last_attempt_at != attempt.claimed_at
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
    """Sends webhooks with up to ``webhook_concurrency`` attempts under way at once, half of
    them at most for one webhook."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings
        self.lease = timedelta(seconds=settings.webhook_timeout + LEASE_MARGIN_S)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._slots = threading.Semaphore(settings.webhook_concurrency)
        self._per_webhook = max(settings.webhook_concurrency // 2, 1)
        self._under_way: Counter[uuid.UUID] = Counter()  # claimed, unfinished, by webhook
        self._under_way_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(
            settings.webhook_concurrency, thread_name_prefix="webhook-send"
        )
        self._sender = Sender(settings)
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
        self._sender.close()
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
        under_way = self._under_way_now()
        with self.database.session() as session:
            self._record_finished(session)
            attempts = (
                claim_due(session, free, self.lease, under_way, self._per_webhook) if free else []
            )
            session.commit()
        with self._under_way_lock:
            self._under_way.update(attempt.webhook_id for attempt in attempts)
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

    def _under_way_now(self) -> dict[uuid.UUID, int]:
        with self._under_way_lock:
            return dict(self._under_way)

    def _sleep_until_due(self) -> None:
        """Until the next delivery that can be claimed is due: a webhook's at its share
        waits for one of its attempts to finish, which wakes the loop."""
        full = full_webhooks(self._under_way_now(), self._per_webhook)
        with self.database.session(read_only=True) as session:
            due_in = next_due_in(session, full)
        wait = self.settings.webhook_poll_interval
        if due_in is not None:
            wait = min(wait, due_in)
        if wait > 0:
            self._wake.wait(wait)

    def _attempt(self, attempt: Attempt) -> None:
        """Send, and hand the outcome to the loop, which records it with others; too late
        to start, hand the attempt back unsent."""
        try:
            if time.monotonic() > attempt.start_by:
                self._finished.put((attempt, NOT_SENT))
                return
            outcome = self._sender.send(attempt)
            WEBHOOK_ATTEMPTS.labels("success" if outcome.succeeded else "failure").inc()
            if not outcome.succeeded:
                logger.warning(
                    "webhook %s: attempt %d of event %s failed: %s",
                    attempt.webhook_id,
                    attempt.number,
                    attempt.event_id,
                    outcome.error or f"HTTP {outcome.status_code}",
                )
            self._finished.put((attempt, outcome))
        finally:
            with self._under_way_lock:
                self._under_way[attempt.webhook_id] -= 1
                if not self._under_way[attempt.webhook_id]:
                    del self._under_way[attempt.webhook_id]
            self._slots.release()
            self._wake.set()

    def _listen(self) -> None:
        """Wake on PostgreSQL NOTIFY from other processes' commits."""
        while not self._stopping.is_set():
            try:
                with plain_postgres_connection(self.database.engine.url) as connection:
                    connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    while not self._stopping.is_set():
                        for _ in connection.notifies(timeout=1.0, stop_after=1):
                            self._wake.set()
            except psycopg.Error:
                logger.exception("webhook listener lost its connection; reconnecting")
                self._stopping.wait(1.0)
