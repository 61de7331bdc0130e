"""Request limits: body size (413) and a per-partner request rate (429)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from partnerpay.problems import ProblemError, problem_response

PARTNER_HEADER = b"x-channel-partner-id"
MAX_TRACKED_PARTNERS = 10_000


class BodyTooLargeError(HTTPException):
    """An HTTP error, so that the framework answers it as such while reading the body."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {limit} bytes.")


def _too_large(limit: int) -> ProblemError:
    return ProblemError(413, "payload_too_large", f"The request body is larger than {limit} bytes.")


class BodySizeLimit:
    """Refuse bodies over ``max_bytes``: by their Content-Length at once, or when a
    streamed body grows past it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await problem_response(_too_large(self.max_bytes))(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLargeError(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLargeError:
            if not started:
                await problem_response(_too_large(self.max_bytes))(scope, receive, send)


class TokenBucket:
    def __init__(self, rate: float, now: float, capacity: float | None = None) -> None:
        """``capacity``: the largest burst; by default one second's worth (at least 1)."""
        self.capacity = max(rate, 1.0) if capacity is None else capacity
        self.tokens = self.capacity
        self.updated = now

    def take(self, rate: float, now: float) -> float:
        """Take a token; 0 if one was there, else the seconds until one will be."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / rate


class PartnerRateLimit:
    """At most ``rate`` requests per second per ``X-CHANNEL-PARTNER-ID`` (bursts of one
    second's worth), per process; over it, 429 with ``Retry-After``."""

    def __init__(self, app: ASGIApp, rate: float, path_prefix: str) -> None:
        self.app = app
        self.rate = rate
        self.path_prefix = path_prefix
        self.buckets: OrderedDict[bytes, TokenBucket] = OrderedDict()

    def _wait_for(self, partner: bytes) -> float:
        now = time.monotonic()
        bucket = self.buckets.get(partner)
        if bucket is None:
            bucket = self.buckets[partner] = TokenBucket(self.rate, now)
            if len(self.buckets) > MAX_TRACKED_PARTNERS:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(partner)
        return bucket.take(self.rate, now)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.path_prefix):
            partner = dict(scope["headers"]).get(PARTNER_HEADER, b"")
            wait = self._wait_for(partner)
            if wait > 0:
                error = ProblemError(
                    429,
                    "rate_limited",
                    f"More than {self.rate:g} requests per second; retry after a pause.",
                    headers={"Retry-After": str(math.ceil(wait))},
                )
                await problem_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class AttemptLimit:
    """At most ``count`` attempts per ``window`` seconds per key, per process: a token bucket
    per key that holds ``count`` and refills over ``window``, for the ``MAX_KEYS`` keys
    seen last. ``count`` 0: no limit."""

    MAX_KEYS = 10_000

    def __init__(self, count: int, window: float) -> None:
        self.count = count
        self.window = window
        self.buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str) -> float:
        """Count an attempt: 0 if it is within the limit, else the seconds until it would be."""
        if not self.count:
            return 0.0
        now, rate = time.monotonic(), self.count / self.window
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(rate, now, capacity=self.count)
            if len(self.buckets) > self.MAX_KEYS:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(key)
        return bucket.take(rate, now)
