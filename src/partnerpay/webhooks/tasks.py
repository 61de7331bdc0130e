"""Webhook delivery, the job runner's first kind: claims due deliveries with a lease,
records what their attempts came to.

A job is one attempt of one delivery, and its key is the webhook: the runner
(``partnerpay.jobs.runner``) sends one webhook's share of a claim one attempt after another,
and no webhook has more than half of a runner's attempts under way. A delivery is claimed
in a short transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite lets one writer in
at a time), which moves its ``next_attempt_at`` past the attempt's timeout, so no other
runner takes it while the attempt is under way. An attempt that cannot start soon enough
to finish inside its lease is handed back unsent rather than sent late. A new event wakes
runners at once (``events/outbox.py`` announces it on :data:`NOTIFY_CHANNEL`); retries are
woken by their due time. Sending is ``sender.py``'s.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from partnerpay.config import Settings
from partnerpay.db import Database, table_of, utcnow
from partnerpay.events.models import (
    DeliveryStatus,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WebhookStatus,
)
from partnerpay.events.outbox import NOTIFY_CHANNEL
from partnerpay.jobs.kinds import register
from partnerpay.observability import WEBHOOK_ATTEMPTS, WEBHOOK_FAILURES
from partnerpay.webhooks.sender import NOT_SENT, Attempt, Outcome, Sender

logger = logging.getLogger(__name__)

LEASE_MARGIN_S = 5.0
# An attempt starts within this long of its claim or is handed back: started later, it could
# outlast its lease (the timeout plus the margin) before its outcome is recorded, and another
# runner would send it again. It matters when one webhook's share of a batch waits
# behind a slow receiver.
START_WITHIN_S = LEASE_MARGIN_S / 2

# The claim's and outcomes' statements are built once: the runner runs them many times a
# second, and building a statement cost more than running it (docs/performance.md).
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


def claim_due(
    session: Session,
    limit: int,
    lease: timedelta,
    under_way: Mapping[Hashable, int] | None = None,
    per_webhook: int | None = None,
) -> list[Attempt]:
    """Take up to ``limit`` due deliveries of enabled webhooks and lease them (in the
    caller's transaction: it must commit before sending), no more of one webhook's than
    bring its attempts ``under_way`` to ``per_webhook``. A delivery left out for that stays
    due, unleased, for a later claim."""
    counts = Counter(under_way or {})
    per_webhook = per_webhook or limit
    now, start_by = utcnow(), time.monotonic() + START_WITHIN_S
    full = [webhook_id for webhook_id, count in counts.items() if count >= per_webhook]
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


def next_due_in(session: Session, full: Sequence[Hashable] | None = None) -> float | None:
    """Seconds until the earliest pending delivery of a webhook not ``full`` is due (0 if
    one is due now)."""
    earliest = session.scalar(_EARLIEST_DUE, {"full": list(full or [])})
    session.rollback()  # the runner's session (jobs own their transactions): the read ends here
    if earliest is None:
        return None
    return max((earliest - utcnow()).total_seconds(), 0.0)


def _attempt_key(attempt: Attempt) -> dict[str, Any]:
    """The parameters by which :data:`_ON_ATTEMPT` finds the attempt's delivery."""
    return {
        "delivery_id": attempt.delivery_id,
        "number": attempt.number,
        "claimed_at": attempt.claimed_at,
    }


def record_outcomes(
    session: Session, finished: Sequence[tuple[Attempt, Outcome]], settings: Settings
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


class WebhookDeliveries:
    """Webhook delivery as a job kind (:class:`partnerpay.jobs.kinds.JobKind`): up to
    ``webhook_concurrency`` attempts under way per runner, half of them at most for one
    webhook."""

    name = "webhook-delivery"
    channel: str | None = NOTIFY_CHANNEL

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.concurrency = settings.webhook_concurrency
        self.poll_interval = settings.webhook_poll_interval
        self.lease = timedelta(seconds=settings.webhook_timeout + LEASE_MARGIN_S)
        self._sender = Sender(settings)

    def claim(
        self, session: Session, limit: int, under_way: Mapping[Hashable, int], per_key: int
    ) -> list[Attempt]:
        return claim_due(session, limit, self.lease, under_way, per_key)

    def run(self, job: Attempt) -> Outcome:
        return _counted(job, self._sender.send(job))

    def failed(self, job: Attempt, error: Exception) -> Outcome:
        return _counted(job, self._sender.failed(error))

    def unstarted(self, job: Attempt) -> Outcome:  # noqa: ARG002  (every hand back is alike)
        return NOT_SENT

    def record(self, session: Session, finished: Sequence[tuple[Attempt, Outcome]]) -> None:
        WEBHOOK_FAILURES.inc(record_outcomes(session, finished, self.settings))

    def next_due_in(self, session: Session, full: Sequence[Hashable]) -> float | None:
        return next_due_in(session, full)

    def close(self) -> None:
        self._sender.close()


def _counted(attempt: Attempt, outcome: Outcome) -> Outcome:
    """Count the attempt in /metrics; log a failed one."""
    WEBHOOK_ATTEMPTS.labels("success" if outcome.succeeded else "failure").inc()
    if not outcome.succeeded:
        logger.warning(
            "webhook %s: attempt %d of event %s failed: %s",
            attempt.webhook_id,
            attempt.number,
            attempt.event_id,
            outcome.error or f"HTTP {outcome.status_code}",
        )
    return outcome


def _webhook_deliveries(_database: Database, settings: Settings) -> WebhookDeliveries:
    return WebhookDeliveries(settings)


register(WebhookDeliveries.name, _webhook_deliveries)
