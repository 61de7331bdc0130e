"""Sending one webhook attempt: the signed POST, and what a failure is called.

:class:`Sender` POSTs an :class:`Attempt` through an httpcore connection pool to an address
the destination check accepted (``destinations.py``), and never raises: whatever goes wrong
is the attempt's failed :class:`Outcome`, in the fixed vocabulary of :class:`FailureKind`.
"""

from __future__ import annotations

import base64
import logging
import ssl
import uuid
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import httpcore
import httpx
from standardwebhooks import Webhook as Signer

from partnerpay.config import Environment, Settings
from partnerpay.webhooks.destinations import (
    AddressPolicy,
    CheckedBackend,
    DestinationRefusedError,
    address_policy,
    parse_webhook_url,
)

logger = logging.getLogger(__name__)

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

    @property
    def key(self) -> Hashable:
        """The runner's key: no webhook holds more than its share of a runner's slots."""
        return self.webhook_id


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None
    sent: bool = True

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


NOT_SENT = Outcome(status_code=None, error=None, sent=False)


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
            return self.failed(error)
        if 200 <= status < 300:
            return Outcome(status_code=status, error=None)
        return Outcome(status, self._described(FailureKind.HTTP_STATUS, f"HTTP {status}"))

    def failed(self, error: Exception) -> Outcome:
        """The failed outcome that an exception of an attempt comes to."""
        return self._failed(failure_kind(error), f"{type(error).__name__}: {error}")

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
