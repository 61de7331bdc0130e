"""Request limits: body size (413), and request rates per key (429) for partners and for
failed authentications."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from partnerpay.problems import ProblemError, problem_response

MAX_TRACKED_KEYS = 10_000


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

    def wait(self, rate: float, now: float) -> float:
        """The seconds until a token will be there (0: one is), taking none."""
        tokens = min(self.capacity, self.tokens + (now - self.updated) * rate)
        return 0.0 if tokens >= 1 else (1 - tokens) / rate


class RateLimit:
    """At most ``rate`` events per second per key, in bursts of up to ``burst`` (by
    default one second's worth), per process, for the ``MAX_TRACKED_KEYS`` keys seen last;
    ``rate`` 0: no limit."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    @classmethod
    def per_window(cls, count: int, window: float) -> RateLimit:
        """At most ``count`` events per ``window`` seconds, all of them at once if need be."""
        return cls(count / window, burst=count)

    def take(self, key: Hashable) -> float:
        """Count an event: 0 if it is within the limit, else the seconds until one will be."""
        if not self.rate:
            return 0.0
        now = self.clock()
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(self.rate, now, capacity=self.burst)
            if len(self.buckets) > MAX_TRACKED_KEYS:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(key)
        return bucket.take(self.rate, now)

    def wait(self, key: Hashable) -> float:
        """The seconds until an event of this key will be within the limit, counting none."""
        bucket = self.buckets.get(key) if self.rate else None
        return 0.0 if bucket is None else bucket.wait(self.rate, self.clock())


def rate_limited(wait: float, detail: str) -> ProblemError:
    """The 429 for an event ``wait`` seconds too early."""
    return ProblemError(429, "rate_limited", detail, headers={"Retry-After": str(math.ceil(wait))})
