"""Request ids, structured (JSON) logs and Prometheus metrics.

Every request gets an id (``X-Request-ID``, taken from the client when it is sane, else
generated), echoed in the response and present in every log line written while the
request is handled. Metrics are per process, or shared across ``serve --workers N``
through prometheus-client's multiprocess mode.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
REQUEST_ID_HEADER = b"x-request-id"
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
access_logger = logging.getLogger("partnerpay.access")

HTTP_REQUESTS = Counter(
    "partnerpay_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
# Latency by status class ("2xx", "4xx"), not by code: a histogram is a dozen series per
# label set, and the exact codes are in the counter.
HTTP_LATENCY = Histogram(
    "partnerpay_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
WEBHOOK_ATTEMPTS = Counter(
    "partnerpay_webhook_attempts_total", "Webhook delivery attempts", ["outcome"]
)
WEBHOOK_FAILURES = Counter(
    "partnerpay_webhook_failures_total", "Webhook deliveries that failed for good"
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id of the request being handled."""

    EXTRA_FIELDS = ("method", "path", "route", "status", "duration_ms", "client")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id_var.get(),
        }
        entry.update({k: getattr(record, k) for k in self.EXTRA_FIELDS if hasattr(record, k)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


LOGGING_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": JsonFormatter}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["stderr"], "level": "INFO"},
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        # A line per webhook attempt would cost as much as sending it; the dispatcher logs
        # failed attempts itself, and /metrics counts them all.
        "httpx": {"level": "WARNING"},
    },
}


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")
            return candidate if SANE_REQUEST_ID.match(candidate) else None
    return None


def _route_of(scope: Scope) -> str:
    """The matched route's full path template (``/api/v3/partner/invoices/{invoice_id}``),
    so that metrics have one label per route, not one per id."""
    context = scope.get("fastapi", {}).get("effective_route_context")
    if context is not None:
        return str(context.path_format)
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched"))


class RequestObserver:
    """ASGI middleware: request id, access log line and metrics for every HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route, method = _route_of(scope), scope["method"]
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(method, route, STATUS_CLASSES[status // 100 - 1]).observe(elapsed)
            access_logger.info(
                "%s %s %s",
                method,
                scope["path"],
                status,
                extra={
                    "method": method,
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
            request_id_var.reset(token)


class WebhookBacklog(Collector):
    """Pending webhook deliveries, counted in the database when metrics are scraped."""

    def __init__(self, count_pending: Any) -> None:
        self.count_pending = count_pending

    def collect(self) -> Iterator[GaugeMetricFamily]:
        due, scheduled = self.count_pending()
        gauge = GaugeMetricFamily(
            "partnerpay_webhook_backlog",
            "Webhook deliveries not yet sent: due now, or scheduled for a retry",
            labels=["state"],
        )
        gauge.add_metric(["due"], due)
        gauge.add_metric(["scheduled"], scheduled)
        yield gauge


def metrics_exposition(backlog: Collector) -> tuple[bytes, str]:
    """The text of ``/metrics``: this process's (or every worker's) metrics and the backlog."""
    if os.environ.get(MULTIPROCESS_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        processes = generate_latest(registry)
    else:
        processes = generate_latest(REGISTRY)
    own = CollectorRegistry()
    own.register(backlog)
    return processes + generate_latest(own), CONTENT_TYPE_LATEST
