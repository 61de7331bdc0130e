"""Limits and operations: body size, rate limit, request ids, logs, metrics, shutdown."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import get_type_hints
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.responses import Response

from partnerpay.app import create_app
from partnerpay.config import Settings
from partnerpay.db import Database
from tests.receiver import Receiver
from tests.support import (
    API,
    Firm,
    Partner,
    Server,
    create_firm,
    create_partner,
    invoice_body,
    wait_until,
)

ONE_MEGABYTE = 1_048_576


def test_bodies_over_a_megabyte_are_refused(client: httpx.Client, firm: Firm) -> None:
    body = invoice_body(firm, notes=["x" * 1000] * 1100)
    response = client.post(f"{API}/invoices", json=body)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "payload_too_large"
    missing = client.get(f"{API}/invoices/firm/{firm.id}/{body['external_id']}")
    assert missing.status_code == 404


def test_streamed_bodies_over_a_megabyte_are_refused(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(ONE_MEGABYTE // 65_536 + 2):
            yield b" " * 65_536

    response = client.post(
        f"{API}/invoices", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


@pytest.fixture
def limited_server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    env = {
        "PARTNERPAY_RATE_LIMIT": "5",
        "PARTNERPAY_AUTH_FAILURE_RATE_LIMIT": "2",
        "PARTNERPAY_RUN_DISPATCHER": "false",
    }
    with Server.start(database_url, tmp_path / "server.log", env=env) as running:
        yield running


def test_each_partner_has_its_own_rate_limit(
    limited_server: Server, partner: Partner, database: Database
) -> None:
    with httpx.Client(base_url=limited_server.base_url, headers=partner.headers) as client:
        statuses = [client.get(f"{API}/firms").status_code for _ in range(12)]
        assert statuses[:5] == [200] * 5
        assert 429 in statuses
        limited = client.get(f"{API}/firms")
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["type"] == "rate_limited"
    other = create_partner(database)
    with httpx.Client(base_url=limited_server.base_url, headers=other.headers) as client:
        assert client.get(f"{API}/firms").status_code == 200
    assert httpx.get(f"{limited_server.base_url}/healthz").status_code == 200


@pytest.fixture
def impatient_server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    """A server that waits one second for a request to arrive."""
    env = {"PARTNERPAY_REQUEST_TIMEOUT": "1", "PARTNERPAY_RUN_DISPATCHER": "false"}
    with Server.start(database_url, tmp_path / "server.log", env=env) as running:
        yield running


def exchange(server: Server, request: bytes) -> bytes:
    """Send ``request`` on a connection of its own (as much of it as the server takes)
    and read until the server closes it; fails if that takes ten seconds."""
    address = urlsplit(server.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)  # refused part way, the answer is still to be read
        answer = b""
        while chunk := sock.recv(65_536):
            answer += chunk
        return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def get_with(headers: bytes) -> bytes:
    return b"GET /healthz HTTP/1.1\r\nHost: test\r\n" + headers + b"Connection: close\r\n\r\n"


def rss_kib(server: Server) -> int:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    (line,) = (line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1])


def test_heads_over_their_limits_are_431_and_hold_no_memory(server: Server) -> None:
    """By default a request's line and headers may take 32 KiB and hold 100 headers."""
    many = b"".join(b"X-Header-%d: 1\r\n" % n for n in range(98))
    assert status_of(exchange(server, get_with(many))) == 200
    too_many = exchange(server, get_with(many + b"X-One: 1\r\nX-Two: 2\r\n"))
    assert status_of(too_many) == 431
    assert b"application/problem+json" in too_many
    assert b'"type":"headers_too_large"' in too_many
    assert status_of(exchange(server, get_with(b"X-Big: " + b"a" * 30_000 + b"\r\n"))) == 200
    assert status_of(exchange(server, get_with(b"X-Big: " + b"a" * 40_000 + b"\r\n"))) == 431

    # Three unfinished 20 MB headers, held open: httptools alone kept all of them
    # (three of 30 MB took the server from 104 to 246 MB until they were closed).
    before = rss_kib(server)
    address = urlsplit(server.base_url)
    connections = [
        socket.create_connection((address.hostname, address.port), timeout=10) for _ in range(3)
    ]
    for sock in connections:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Huge: " + b"a" * 20_000_000)
    assert rss_kib(server) - before < 8_192
    for sock in connections:
        with sock:
            assert status_of(sock.recv(65_536)) == 431
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200


def test_a_request_must_arrive_within_the_timeout(impatient_server: Server) -> None:
    """Whatever has come of it after a second (a head cut short, five of a body's
    hundred bytes, nothing at all), the server answers 408 and closes the connection."""
    slow_head = b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: a"
    slow_body = (
        f"POST {API}/invoices HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        'Content-Length: 100\r\n\r\n{"a":'
    ).encode()
    for request in (slow_head, slow_body, b""):
        answer = exchange(impatient_server, request)
        assert status_of(answer) == 408, request
        assert b'"type":"request_timeout"' in answer
    assert status_of(exchange(impatient_server, get_with(b""))) == 200
    metrics = httpx.get(f"{impatient_server.base_url}/metrics").text
    assert 'status="5' not in metrics


def test_a_stranger_sending_a_partners_id_cannot_spend_its_rate_limit(
    limited_server: Server, partner: Partner
) -> None:
    """Partner ids are not secret. A flood of wrong keys with this partner's id is refused
    by its address's own budget for failures, whatever X-Forwarded-For it sends (from
    127.0.0.1, which uvicorn would trust by default); the partner, from another address
    (127.0.0.2), makes its four requests (within its five a second) and all succeed."""
    stranger = httpx.Client(
        base_url=limited_server.base_url,
        headers={"X-CHANNEL-PARTNER-ID": str(partner.id), "X-API-KEY": "ppk_guessed"},
    )
    own = httpx.Client(
        base_url=limited_server.base_url,
        transport=httpx.HTTPTransport(local_address="127.0.0.2"),
        headers=partner.headers,
    )
    flood: list[httpx.Response] = []
    mine: list[int] = []
    with stranger, own:
        for round_ in range(4):
            for attempt in range(10):
                forwarded = {"X-Forwarded-For": f"10.0.{round_}.{attempt}"}
                flood.append(stranger.get(f"{API}/firms", headers=forwarded))
            mine.append(own.get(f"{API}/firms").status_code)
    assert mine == [200] * 4
    statuses = {response.status_code for response in flood}
    assert statuses == {401, 429}
    refused = next(response for response in flood if response.status_code == 429)
    assert refused.json()["type"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1


def test_every_spelling_of_a_partners_id_shares_its_rate_limit(
    limited_server: Server, partner: Partner
) -> None:
    """``uuid.UUID`` reads many spellings of one id; each of the eight here is sent three
    times, within five a second each, but the partner's 24 requests share one budget."""
    text, digits = str(partner.id), partner.id.hex
    spellings = [text, text.upper(), f"{{{text}}}", f"urn:uuid:{text}"]
    spellings += [digits, digits.upper(), f"{{{digits}}}", f"urn:uuid:{text.upper()}"]
    with httpx.Client(base_url=limited_server.base_url) as client:
        statuses = [
            client.get(
                f"{API}/firms",
                headers={"X-CHANNEL-PARTNER-ID": spelling, "X-API-KEY": partner.api_key},
            ).status_code
            for spelling in spellings * 3
        ]
    assert set(statuses) == {200, 429}
    assert statuses[:5] == [200] * 5


def test_a_burst_of_health_checks_cannot_starve_the_connection_pool(
    database_url: str, tmp_path: Path
) -> None:
    """A request must never wait for a worker thread while its session holds a pooled
    connection: with every thread waiting for a connection, it would never get one. Two
    threads and two connections, and far more requests than either."""
    env = {
        "PARTNERPAY_WORKER_THREADS": "2",
        "PARTNERPAY_DB_POOL_SIZE": "2",
        "PARTNERPAY_RUN_DISPATCHER": "false",
    }
    with (
        Server.start(database_url, tmp_path / "server.log", env=env) as running,
        ThreadPoolExecutor(max_workers=40) as pool,
    ):
        health = f"{running.base_url}/healthz"
        statuses = list(pool.map(lambda _: httpx.get(health, timeout=10).status_code, range(400)))
    assert statuses == [200] * 400


def test_every_endpoint_returns_a_response_not_a_model() -> None:
    """FastAPI would validate a returned model in a second worker-thread call, while the
    request's session holds its connection (see ``partnerpay.dependencies``)."""
    app = create_app(Settings())
    routes = [context.original_route for context in iter_route_contexts(app.routes)]
    endpoints = [route.endpoint for route in routes if isinstance(route, APIRoute)]
    returns = {endpoint.__qualname__: get_type_hints(endpoint)["return"] for endpoint in endpoints}
    assert len(returns) > 20
    assert {name: kind for name, kind in returns.items() if not issubclass(kind, Response)} == {}


def test_request_ids_are_echoed_and_logged(client: httpx.Client, server: Server) -> None:
    given = f"trace-{uuid.uuid4().hex}"
    response = client.get(f"{API}/firms", headers={"X-Request-ID": given})
    assert response.headers["x-request-id"] == given

    generated = client.get(f"{API}/firms", headers={"X-Request-ID": "bad id\twith tab"})
    assert generated.headers["x-request-id"] not in ("", "bad id\twith tab")

    def logged() -> list[dict[str, object]]:
        lines = [
            json.loads(line) for line in server.log.read_text().splitlines() if "{" in line[:1]
        ]
        return [line for line in lines if line.get("request_id") == given]

    (entry,) = wait_until(logged, 5, "the request's log line")
    assert entry["route"] == "/api/v3/partner/firms"
    assert entry["status"] == 200


def test_metrics_count_requests_and_the_webhook_backlog(
    client: httpx.Client, server: Server
) -> None:
    client.get(f"{API}/firms")
    text = httpx.get(f"{server.base_url}/metrics").text
    assert (
        'partnerpay_http_requests_total{method="GET",route="/api/v3/partner/firms",status="200"}'
        in text
    )
    assert "partnerpay_http_request_duration_seconds_bucket" in text
    assert 'partnerpay_webhook_backlog{state="due"}' in text
    assert "partnerpay_webhook_attempts_total" in text


def test_latency_is_measured_by_route_and_status_class(
    client: httpx.Client, anonymous: httpx.Client, server: Server
) -> None:
    assert client.get(f"{API}/firms").status_code == 200
    assert anonymous.get(f"{API}/firms").status_code == 401
    stray = f"/no-such-page/{uuid.uuid4().hex}"
    assert anonymous.get(stray).status_code == 404
    text = httpx.get(f"{server.base_url}/metrics").text
    latency = "partnerpay_http_request_duration_seconds_count"
    assert f'{latency}{{method="GET",route="/api/v3/partner/firms",status="2xx"}}' in text
    assert f'{latency}{{method="GET",route="/api/v3/partner/firms",status="4xx"}}' in text
    assert f'{latency}{{method="GET",route="unmatched",status="4xx"}}' in text
    assert stray not in text


def test_shutdown_finishes_the_delivery_under_way(fresh_database_url: str, tmp_path: Path) -> None:
    database = Database(fresh_database_url)
    partner = create_partner(database)
    firm = create_firm(database, partner)
    database.dispose()
    log = tmp_path / "server.log"
    with Receiver().running() as receiver:
        receiver.delay_s = 1.0
        with (
            Server.start(fresh_database_url, log) as server,
            httpx.Client(base_url=server.base_url, headers=partner.headers) as client,
        ):
            hook = {"name": "slow", "url": receiver.url, "events": ["invoice.created"]}
            client.post(f"{API}/webhooks", json=hook)
            client.post(f"{API}/invoices", json=invoice_body(firm))
            receiver.wait_for(1)
            server.process.send_signal(signal.SIGTERM)
            # uvicorn re-raises SIGTERM once it has shut down gracefully
            assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert receiver.answered == 1
        with (
            Server.start(fresh_database_url, log) as again,
            httpx.Client(base_url=again.base_url, headers=partner.headers) as client,
        ):
            (event,) = client.get(f"{API}/events").json()["events"]
        assert event["status"] == "sent"
        assert event["deliveries"][0]["attempts"] == 1
        assert len(receiver.snapshot()) == 1
