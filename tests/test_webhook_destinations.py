"""Where webhooks go: URLs the sender can parse, public addresses only in production (the
IPv6 transition forms and IANA's special-purpose ranges included), one DNS lookup per
connection (no rebinding), a fixed failure vocabulary, and a dispatcher that no URL stalls.
"""

from __future__ import annotations

import ipaddress
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from partnerpay.config import Environment, Settings
from partnerpay.db import Database
from partnerpay.events.models import Webhook
from partnerpay.webhooks.destinations import IPAddress, allow_any, is_globally_reachable
from partnerpay.webhooks.sender import Attempt, Sender
from tests.receiver import Receiver
from tests.stripe_emulator import StripeEmulator
from tests.support import (
    API,
    Partner,
    Server,
    assert_problem,
    create_firm,
    create_partner,
    free_port,
    invoice_body,
    wait_until,
)

UNPARSABLE_URLS = ["http://8.8.8.8/hook\u0000", "https://1.1.1.1/x\n", "http://[::1"]
# As rows stored before registration refused them (PostgreSQL's text holds no NUL).
STORED_UNPARSABLE_URLS = ["http://8.8.8.8/hook\u0001", "https://1.1.1.1/x\n", "http://[::1"]
NOT_PUBLIC = [
    "127.0.0.1",
    "10.1.2.3",
    "100.64.0.1",
    "169.254.169.254",
    "192.0.0.8",
    "192.0.2.1",
    "198.18.0.1",
    "240.0.0.1",
    "::1",
    "::",
    "::127.0.0.1",  # IPv4-compatible
    "::ffff:127.0.0.1",  # IPv4-mapped
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b:1::808:808",  # local-use NAT64
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "2001:db8::1",
    "fc00::1",
    "fe80::1",
    "ff02::1",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::1"]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_addresses_that_are_not_globally_reachable_are_refused(address: str) -> None:
    assert not is_globally_reachable(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_globally_reachable(ipaddress.ip_address(address))


@pytest.mark.parametrize("url", UNPARSABLE_URLS)
def test_a_url_the_sender_cannot_parse_is_refused_at_registration(
    client: httpx.Client, url: str
) -> None:
    body = {"name": "n", "url": url, "events": ["invoice.created"]}
    assert_problem(client.post(f"{API}/webhooks", json=body), 400, "invalid_url", "url")
    good = {**body, "url": "http://127.0.0.1:9/parsable"}
    webhook = client.post(f"{API}/webhooks", json=good).json()["webhook"]
    update = {"webhook_id": webhook["webhook_id"], "url": url}
    assert_problem(client.put(f"{API}/webhooks", json=update), 400, "invalid_url", "url")
    assert client.get(f"{API}/webhooks").json()["webhooks"][0]["url"] == good["url"]


@pytest.fixture
def production_server(
    database_url: str, tmp_path: Path, stripe_emulator: StripeEmulator
) -> Iterator[Server]:
    """Production takes payments through a real gateway: Stripe, emulated here."""
    env = {
        **stripe_emulator.gateway_env(),
        "PARTNERPAY_ENV": "production",
        "PARTNERPAY_RUN_DISPATCHER": "false",
    }
    with Server.start(database_url, tmp_path / "server.log", env=env) as running:
        yield running


def test_production_refuses_transition_forms_and_special_ranges(
    production_server: Server, partner: Partner
) -> None:
    with httpx.Client(base_url=production_server.base_url, headers=partner.headers) as client:
        for address in NOT_PUBLIC:
            host = f"[{address}]" if ":" in address else address
            body = {"name": "n", "url": f"http://{host}/hook", "events": ["invoice.created"]}
            assert_problem(client.post(f"{API}/webhooks", json=body), 400, "invalid_url", "url")
        nat64_public = {
            "name": "n",
            "url": "http://[64:ff9b::808:808]/",
            "events": ["invoice.created"],
        }
        created = client.post(f"{API}/webhooks", json=nat64_public)
        assert created.status_code == 200, created.text
        webhook_id = created.json()["webhook"]["webhook_id"]
        moved = {"webhook_id": webhook_id, "url": "http://[2002:7f00:1::]/"}
        assert_problem(client.put(f"{API}/webhooks", json=moved), 400, "invalid_url", "url")
        assert client.delete(f"{API}/webhooks/{webhook_id}").status_code in (200, 204)


def attempt_to(url: str) -> Attempt:
    now = datetime.now(UTC)
    return Attempt(
        delivery_id=uuid.uuid4(),
        number=1,
        claimed_at=now,
        start_by=time.monotonic() + 60,
        due_at=now,
        previous_attempt_at=None,
        event_id=uuid.uuid4(),
        webhook_id=uuid.uuid4(),
        payload='{"event_type": "invoice.created"}',
        url=url,
        secret="whsec_" + "A" * 43 + "=",
        authentication=None,
    )


@pytest.fixture
def hostile_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``rebind.test`` resolves to 127.0.0.1 at the first lookup and 127.0.0.2 after; the
    lookups made are listed."""
    real = socket.getaddrinfo
    lookups: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.test":
            return real(host, port, *args, **kwargs)
        lookups.append("127.0.0.1" if not lookups else "127.0.0.2")
        return real(lookups[-1], port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


def only_first_loopback(address: IPAddress) -> bool:
    return address == ipaddress.ip_address("127.0.0.1")


def test_an_attempt_connects_to_the_address_its_check_accepted(hostile_dns: list[str]) -> None:
    port = free_port()
    checked, rebound = Receiver(port, "127.0.0.1"), Receiver(port, "127.0.0.2")
    sender = Sender(Settings(env=Environment.PRODUCTION), allowed=only_first_loopback)
    with checked.running(), rebound.running():
        outcome = sender.send(attempt_to(f"http://rebind.test:{port}/hooks"))
    sender.close()
    assert outcome.succeeded, outcome
    assert hostile_dns == ["127.0.0.1"]
    assert [r.headers["host"] for r in checked.snapshot()] == [f"rebind.test:{port}"]
    assert rebound.snapshot() == []


def test_an_attempt_to_a_refused_address_connects_nowhere(hostile_dns: list[str]) -> None:
    port = free_port()
    receiver = Receiver(port, "127.0.0.1")
    sender = Sender(Settings(env=Environment.PRODUCTION), allowed=lambda _address: False)
    with receiver.running():
        outcome = sender.send(attempt_to(f"http://rebind.test:{port}/hooks"))
    sender.close()
    assert outcome == type(outcome)(status_code=None, error="destination_refused")
    assert receiver.snapshot() == []
    assert hostile_dns == ["127.0.0.1"]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(8)
        yield listening.getsockname()[1]


def failures_in(env: Environment, urls: list[str]) -> list[str | None]:
    sender = Sender(Settings(env=env, webhook_timeout=0.5), allowed=allow_any)
    try:
        return [sender.send(attempt_to(url)).error for url in urls]
    finally:
        sender.close()


def test_production_reports_failures_in_a_fixed_vocabulary(silent_port: int) -> None:
    receiver = Receiver()
    receiver.answer = lambda _n: 500
    closed = f"http://127.0.0.1:{free_port()}/hooks"
    plain = receiver.url.replace("http://", "https://")
    with receiver.running():
        urls = [closed, f"http://127.0.0.1:{silent_port}/", plain, receiver.url]
        production = failures_in(Environment.PRODUCTION, urls)
        sandbox = failures_in(Environment.SANDBOX, urls)
    assert production == ["connection_failed", "timeout", "tls_error", "http_status"]
    assert [error.split(":", 1)[0] for error in sandbox if error] == production
    assert all(len(error) > len(kind) for error, kind in zip(sandbox, production, strict=True))
    assert "Connection refused" in str(sandbox[0])


def test_a_url_the_sender_cannot_parse_fails_its_deliveries_and_stalls_no_one(
    fresh_database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """Rows stored before registration refused such URLs: each attempt is that delivery's
    failure (recorded, retried, failed for good) and every slot comes back."""
    database = Database(fresh_database_url)
    stranger, other = create_partner(database), create_partner(database)
    stranger_firm, other_firm = create_firm(database, stranger), create_firm(database, other)
    env = {
        "PARTNERPAY_WEBHOOK_CONCURRENCY": "4",
        "PARTNERPAY_WEBHOOK_RETRY_SCHEDULE": "0.2,0.2",
        "PARTNERPAY_WEBHOOK_POLL_INTERVAL": "0.2",
    }
    with Server.start(fresh_database_url, tmp_path / "server.log", env=env) as server:
        with httpx.Client(base_url=server.base_url, headers=stranger.headers) as client:
            for n, _url in enumerate(STORED_UNPARSABLE_URLS):
                body = {"name": "n", "url": f"{receiver.url}/{n}", "events": ["invoice.created"]}
                assert client.post(f"{API}/webhooks", json=body).status_code == 200
            with database.session() as session:
                for n, url in enumerate(STORED_UNPARSABLE_URLS):
                    session.execute(
                        update(Webhook).where(Webhook.url == f"{receiver.url}/{n}").values(url=url)
                    )
                session.commit()
            for _ in range(3):
                client.post(f"{API}/invoices", json=invoice_body(stranger_firm))
        with httpx.Client(base_url=server.base_url, headers=other.headers) as client:
            body = {"name": "n", "url": receiver.url, "events": ["invoice.created"]}
            assert client.post(f"{API}/webhooks", json=body).status_code == 200
            client.post(f"{API}/invoices", json=invoice_body(other_firm))
            assert receiver.wait_for(1)[0].path == "/hooks"
        with httpx.Client(base_url=server.base_url, headers=stranger.headers) as client:

            def all_failed() -> list[dict[str, Any]] | None:
                events = client.get(f"{API}/events").json()["events"]
                deliveries = [d for event in events for d in event["deliveries"]]
                done = len(deliveries) == 9 and all(d["status"] == "failed" for d in deliveries)
                return deliveries if done else None

            deliveries = wait_until(all_failed, 20, "every unparsable delivery to fail")
    database.dispose()
    assert {d["attempts"] for d in deliveries} == {3}
    assert all(d["last_error"].startswith("destination_refused") for d in deliveries)
    assert len(receiver.snapshot()) == 1
