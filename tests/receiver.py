"""A real webhook receiver: an HTTP server on loopback that records what it is sent."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support import free_port, wait_until


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def envelope(self) -> dict[str, Any]:
        envelope: dict[str, Any] = json.loads(self.body)
        return envelope


class _LoopbackServer(ThreadingHTTPServer):
    # The standard library's backlog of 5 drops connections when dispatchers send dozens at
    # once; a real server's is far longer.
    request_queue_size = 128
    daemon_threads = True


class Receiver:
    """Answers each POST with ``answer(n)`` (n counts from 1), 200 by default."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port()
        self.url = f"http://{host}:{self.port}/hooks"
        self.received: list[Received] = []
        self.answer: Callable[[int], int] = lambda _n: 200
        self.delay_s = 0.0
        self.answered = 0
        self.most_in_flight = 0  # the most POSTs under way at once
        self._in_flight = 0
        self._lock = threading.Lock()
        self._server: _LoopbackServer | None = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    receiver.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    status = receiver.answer(len(receiver.received))
                    receiver._in_flight += 1
                    receiver.most_in_flight = max(receiver.most_in_flight, receiver._in_flight)
                time.sleep(receiver.delay_s)  # a slow receiver, when a test asks for one
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()
                with receiver._lock:
                    receiver.answered += 1
                    receiver._in_flight -= 1

            def log_message(self, *_args: Any) -> None:
                pass

        return Handler

    @contextmanager
    def running(self) -> Iterator[Receiver]:
        server = _LoopbackServer((self.host, self.port), self._handler())
        self._server = server
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def wait_for(self, count: int, deadline_s: float = 10.0) -> list[Received]:
        wait_until(lambda: len(self.snapshot()) >= count, deadline_s, f"{count} webhooks")
        return self.snapshot()

    def topics(self) -> list[str]:
        return [r.envelope["event_type"] for r in self.snapshot()]
