"""The HTTP/1.1 protocol ``partnerpay serve`` speaks: uvicorn's httptools protocol with the
limits httptools lacks, since no reverse proxy is assumed in front of it.

httptools keeps a header it has not finished reading in memory, however long, and uvicorn
waits for a request's bytes for as long as they take. So, per request:

- its head (request line and headers) may take at most ``PARTNERPAY_MAX_HEADER_BYTES``
  and hold at most ``PARTNERPAY_MAX_HEADERS`` headers: over either, 431 and the connection
  closes. Bytes are counted before httptools sees them, so the memory a head holds is
  bounded by the limit, not by what the client sends;
- its head and body must arrive within ``PARTNERPAY_REQUEST_TIMEOUT`` seconds of its first
  byte (of the connection's opening, for the first request): after it, 408 (or, once a
  response has begun, nothing) and the connection closes.

Between requests, uvicorn's keep-alive timeout closes an idle connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from partnerpay.config import get_settings
from partnerpay.problems import PROBLEM_CONTENT_TYPE, ProblemError


class TooManyHeadersError(Exception):
    """Raised in httptools' callback to stop parsing a head with too many headers."""


def refusal(status: int, type_: str, detail: str, default_headers: list[Any]) -> bytes:
    """A complete ``Connection: close`` response carrying a problem document."""
    body = ProblemError(status, type_, detail).problem.model_dump_json(exclude_none=True).encode()
    lines = [STATUS_LINE[status]]
    lines += [name + b": " + value + b"\r\n" for name, value in default_headers]
    lines += [
        b"content-type: " + PROBLEM_CONTENT_TYPE.encode() + b"\r\n",
        b"content-length: " + str(len(body)).encode() + b"\r\n",
        b"connection: close\r\n\r\n",
        body,
    ]
    return b"".join(lines)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, bounding each request's head and the time to receive it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.max_head_bytes = settings.max_header_bytes
        self.max_headers = settings.max_headers
        self.request_timeout = settings.request_timeout
        # What the head being received may still take; None while a body is received.
        self.head_left: int | None = self.max_head_bytes
        # When the request being received began (None between requests), and a timer that
        # checks it: one per connection, re-armed when it fires early, never per request.
        self.request_started: float | None = None
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.request_started = self.loop.time()
        self.deadline = self.loop.call_later(self.request_timeout, self.request_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.head_left is not None and len(data) > self.head_left:
            # The head must end within what it may still take: parse that much first.
            within, data = data[: self.head_left], data[self.head_left :]
            self._parse(within)
            if self.transport.is_closing():
                return
            if self.head_left is not None:
                self._refuse(431, "headers_too_large", self._head_too_large())
                return
        elif self.head_left is not None:
            self.head_left -= len(data)
        if data:
            self._parse(data)

    def _parse(self, data: bytes) -> None:
        """uvicorn 0.54's ``data_received``, answering too many headers with a 431."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as error:
            if isinstance(error.__context__, TooManyHeadersError):
                self._refuse(431, "headers_too_large", self._head_too_large())
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.request_started is None:
            self.request_started = self.loop.time()
        if self.deadline is None:
            self.deadline = self.loop.call_later(self.request_timeout, self.request_timed_out)

    def on_headers_complete(self) -> None:
        self.head_left = None
        if len(self.headers) > self.max_headers:
            raise TooManyHeadersError
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.request_started = None
        self.head_left = self.max_head_bytes
        super().on_message_complete()

    def request_timed_out(self) -> None:
        self.deadline = None
        if self.request_started is None:
            return  # between requests: uvicorn's keep-alive timeout watches those
        left = self.request_started + self.request_timeout - self.loop.time()
        if left > 0:
            self.deadline = self.loop.call_later(left, self.request_timed_out)
            return
        cycle = self.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            self.transport.close()  # a response is under way: a 408 cannot be sent now
            return
        detail = f"The request did not all arrive within {self.request_timeout:g} s of its start."
        self._refuse(408, "request_timeout", detail)

    def _head_too_large(self) -> str:
        return (
            f"A request's line and headers may take at most {self.max_head_bytes} bytes and "
            f"hold at most {self.max_headers} headers."
        )

    def _refuse(self, status: int, type_: str, detail: str) -> None:
        """Answer ``status`` and close, whatever the request's handler still does."""
        self._cancel_deadline()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
        if not self.transport.is_closing():
            default_headers = self.server_state.default_headers
            self.transport.write(refusal(status, type_, detail, default_headers))
            self.transport.close()

    def _cancel_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
