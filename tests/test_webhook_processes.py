"""Webhook delivery across processes: restarts, SIGKILL, several workers, production rules.

Each test runs servers and workers of its own on a database of its own, so that no other
dispatcher takes its deliveries.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from partnerpay.config import Environment
from partnerpay.db import Database
from partnerpay.firms.models import FirmStatus
from partnerpay.webhooks.schemas import WebhookIn
from partnerpay.webhooks.service import create_webhook
from tests.receiver import Receiver
from tests.stripe_emulator import StripeEmulator
from tests.support import (
    API,
    Firm,
    Partner,
    Server,
    create_firm,
    create_partner,
    invoice_body,
    wait_until,
    worker_process,
)

SLOW_RETRIES = {
    "PARTNERPAY_WEBHOOK_RETRY_SCHEDULE": "1,2,4,8,16",
    "PARTNERPAY_WEBHOOK_POLL_INTERVAL": "0.2",
    "PARTNERPAY_WEBHOOK_TIMEOUT": "3",
}


@pytest.fixture
def own_database(fresh_database_url: str) -> Iterator[Database]:
    database = Database(fresh_database_url)
    yield database
    database.dispose()


def subscribe(client: httpx.Client, url: str, events: list[str] | None = None) -> None:
    body = {"name": "hook", "url": url, "events": events or ["invoice.created"]}
    assert client.post(f"{API}/webhooks", json=body).status_code == 200


def post_invoices(server: Server, partner: Partner, firm: Firm, count: int, threads: int) -> None:
    """Create ``count`` invoices from ``threads`` concurrent clients."""

    def post_share(share: int) -> None:
        with httpx.Client(base_url=server.base_url, headers=partner.headers, timeout=60) as c:
            for _ in range(share):
                response = c.post(f"{API}/invoices", json=invoice_body(firm))
                assert response.status_code == 200, response.text

    shares = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]
    workers = [threading.Thread(target=post_share, args=(share,)) for share in shares]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def test_pending_events_survive_sigkill(
    own_database: Database, fresh_database_url: str, tmp_path: Path
) -> None:
    partner = create_partner(own_database)
    firm = create_firm(own_database, partner)
    receiver = Receiver()  # down until the server has been killed
    log = tmp_path / "server.log"
    with Server.start(fresh_database_url, log, env=SLOW_RETRIES) as first:
        with httpx.Client(base_url=first.base_url, headers=partner.headers) as client:
            subscribe(client, receiver.url)
        post_invoices(first, partner, firm, count=200, threads=4)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()

    with receiver.running(), Server.start(fresh_database_url, log, env=SLOW_RETRIES) as second:
        received = receiver.wait_for(200, deadline_s=60)
        with httpx.Client(base_url=second.base_url, headers=partner.headers) as client:
            logged = client.get(f"{API}/events", params={"limit": 1000}).json()["events"]

    event_ids = {event["webhook_event_id"] for event in logged}
    assert len(event_ids) == 200
    assert {r.headers["webhook-id"] for r in received} == event_ids
    assert all(r.headers["webhook-id"] == r.envelope["event_id"] for r in received)


def test_two_workers_deliver_each_event_once(
    database_url: str, own_database: Database, fresh_database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("several workers share one database on PostgreSQL")
    partner = create_partner(own_database)
    firm = create_firm(own_database, partner)
    # A long timeout: on a loaded machine an answer slower than 3 s would be retried and
    # arrive twice, as it should; here a second copy may only mean two workers sent it.
    patient = {**SLOW_RETRIES, "PARTNERPAY_WEBHOOK_TIMEOUT": "30"}
    api_only = {**patient, "PARTNERPAY_RUN_DISPATCHER": "false"}
    with ExitStack() as stack:
        receiver = stack.enter_context(Receiver().running())
        server = stack.enter_context(
            Server.start(fresh_database_url, tmp_path / "server.log", env=api_only)
        )
        for name in ("worker-1", "worker-2"):
            stack.enter_context(
                worker_process(fresh_database_url, tmp_path / f"{name}.log", patient)
            )
        with httpx.Client(base_url=server.base_url, headers=partner.headers) as client:
            subscribe(client, receiver.url)
        post_invoices(server, partner, firm, count=1000, threads=8)
        received = receiver.wait_for(1000, deadline_s=120)

        webhook_ids = [r.headers["webhook-id"] for r in received]
        assert len(set(webhook_ids)) == 1000
        assert len(webhook_ids) == 1000


def test_a_slow_receiver_gets_a_backlog_once(
    own_database: Database, fresh_database_url: str, tmp_path: Path
) -> None:
    """A dispatcher claims a backlog in one batch and sends one webhook's share one after
    another; at half a second an answer, the batch outlasts its lease (the 1 s timeout plus
    the margin), and no attempt may go out a second time when it runs out."""
    partner = create_partner(own_database)
    firm = create_firm(own_database, partner)
    quick_timeout = {**SLOW_RETRIES, "PARTNERPAY_WEBHOOK_TIMEOUT": "1"}
    log = tmp_path / "server.log"
    with Receiver().running() as receiver:
        receiver.delay_s = 0.5
        backlog = {**quick_timeout, "PARTNERPAY_RUN_DISPATCHER": "false"}
        with Server.start(fresh_database_url, log, env=backlog) as first:
            with httpx.Client(base_url=first.base_url, headers=partner.headers) as client:
                subscribe(client, receiver.url)
            post_invoices(first, partner, firm, count=24, threads=2)

        with (
            Server.start(fresh_database_url, log, env=quick_timeout) as second,
            httpx.Client(base_url=second.base_url, headers=partner.headers) as client,
        ):

            def all_sent() -> list[dict[str, Any]] | None:
                events = client.get(f"{API}/events", params={"limit": 100}).json()["events"]
                return events if all(e["status"] == "sent" for e in events) else None

            events = wait_until(all_sent, 60, "every event to be sent")
            received = receiver.snapshot()

    assert len(events) == 24
    assert sorted(r.headers["webhook-id"] for r in received) == sorted(
        e["webhook_event_id"] for e in events
    )
    assert {e["deliveries"][0]["attempts"] for e in events} == {1}


def test_a_dispatcher_has_more_than_sixteen_attempts_under_way(
    own_database: Database, fresh_database_url: str, tmp_path: Path
) -> None:
    """One event for twenty webhooks: each webhook's attempt goes out on its own, and with
    the default concurrency (128) all twenty are under way at once at a receiver that takes
    a second to answer. At 16 a dispatcher delivered too few a second to keep up with the
    API (docs/performance.md, webhook dispatcher settings)."""
    partner = create_partner(own_database)
    firm = create_firm(own_database, partner)
    hooks = 20
    with (
        Receiver().running() as receiver,
        Server.start(fresh_database_url, tmp_path / "server.log", env=SLOW_RETRIES) as server,
        httpx.Client(base_url=server.base_url, headers=partner.headers) as client,
    ):
        receiver.delay_s = 1.0
        for n in range(hooks):
            subscribe(client, f"{receiver.url}/{n}")
        post_invoices(server, partner, firm, count=1, threads=1)
        received = receiver.wait_for(hooks)
        wait_until(lambda: receiver.answered == hooks, 10, "every answer")

    assert len({r.path for r in received}) == hooks
    assert receiver.most_in_flight == hooks


def test_production_refuses_private_destinations(
    own_database: Database, fresh_database_url: str, tmp_path: Path, stripe_emulator: StripeEmulator
) -> None:
    partner = create_partner(own_database)
    firm = create_firm(own_database, partner)
    receiver = Receiver()
    with own_database.unit_of_work() as session:  # registered before the move to production
        create_webhook(
            session,
            partner.id,
            WebhookIn.model_validate(
                {"name": "old", "url": receiver.url, "events": ["invoice.created"]}
            ),
            Environment.SANDBOX,
        )
    production = {**SLOW_RETRIES, **stripe_emulator.gateway_env(), "PARTNERPAY_ENV": "production"}
    with (
        receiver.running(),
        Server.start(fresh_database_url, tmp_path / "server.log", env=production) as server,
        httpx.Client(base_url=server.base_url, headers=partner.headers) as client,
    ):
        refused = client.post(
            f"{API}/webhooks",
            json={"name": "n", "url": "http://127.0.0.1:9/x", "events": ["invoice.created"]},
        )
        assert refused.status_code == 400
        assert refused.json()["error_context"]["fields"][0]["field"] == "url"

        client.post(f"{API}/invoices", json=invoice_body(firm))

        def refused_delivery() -> dict[str, Any] | None:
            events = client.get(f"{API}/events").json()["events"]
            delivery = events[0]["deliveries"][0] if events else None
            return delivery if delivery and delivery.get("last_error") else None

        delivery = wait_until(refused_delivery, 10, "the delivery to be refused")
        assert delivery["last_error"] == "destination_refused"
        assert receiver.snapshot() == []


def test_failing_webhook_is_disabled(
    own_database: Database, fresh_database_url: str, tmp_path: Path
) -> None:
    partner = create_partner(own_database)
    firm = create_firm(own_database, partner)
    settings = {
        "PARTNERPAY_WEBHOOK_RETRY_SCHEDULE": "0.3,0.3,0.3,0.3,0.3,0.3",
        "PARTNERPAY_WEBHOOK_DISABLE_AFTER": "0.5",
        "PARTNERPAY_WEBHOOK_POLL_INTERVAL": "0.1",
    }
    with (
        Receiver().running() as receiver,
        Server.start(fresh_database_url, tmp_path / "server.log", env=settings) as server,
        httpx.Client(base_url=server.base_url, headers=partner.headers) as client,
    ):
        receiver.answer = lambda _n: 503
        subscribe(client, receiver.url)
        client.post(f"{API}/invoices", json=invoice_body(firm))

        def disabled() -> bool:
            webhooks = client.get(f"{API}/webhooks").json()["webhooks"]
            return bool(webhooks[0]["status"] == "Disabled")

        wait_until(disabled, 10, "the webhook to be disabled")
        (event,) = client.get(f"{API}/events").json()["events"]
        assert event["status"] == "failed"
        assert event["deliveries"][0]["attempts"] >= 2


def test_firm_status_moves_are_events(
    own_database: Database, fresh_database_url: str, tmp_path: Path
) -> None:
    partner = create_partner(own_database)
    firm = create_firm(own_database, partner, status=FirmStatus.PENDING)
    env = {**os.environ, "PARTNERPAY_DATABASE_URL": fresh_database_url}
    with (
        Receiver().running() as receiver,
        Server.start(fresh_database_url, tmp_path / "server.log", env=SLOW_RETRIES) as server,
        httpx.Client(base_url=server.base_url, headers=partner.headers) as client,
    ):
        subscribe(client, receiver.url, events=["firm.status.updated"])
        for status in ("Awaiting", "Active"):
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "partnerpay",
                    "admin",
                    "set-firm-status",
                    str(firm.id),
                    status,
                ],
                env=env,
                check=True,
                capture_output=True,
            )
        received = receiver.wait_for(2)
    assert [r.envelope["event"]["status"] for r in received] == ["Awaiting", "Active"]
    assert {r.envelope["event_type"] for r in received} == {"firm.status.updated"}
    assert received[1].envelope["event"]["firm_id"] == str(firm.id)


def test_a_stalled_receiver_leaves_half_the_attempts_to_other_webhooks(
    own_database: Database, fresh_database_url: str, tmp_path: Path
) -> None:
    """One partner's receiver takes 6 s to answer and has more deliveries due than the
    dispatcher has slots (4); another partner's event is still sent at once, through the
    half of the slots the stalled webhook may not take."""
    stalled, other = create_partner(own_database), create_partner(own_database)
    stalled_firm, other_firm = create_firm(own_database, stalled), create_firm(own_database, other)
    env = {
        **SLOW_RETRIES,
        "PARTNERPAY_WEBHOOK_CONCURRENCY": "4",
        "PARTNERPAY_WEBHOOK_TIMEOUT": "10",
    }
    with (
        Receiver().running() as slow_receiver,
        Receiver().running() as receiver,
        Server.start(fresh_database_url, tmp_path / "server.log", env=env) as server,
        httpx.Client(base_url=server.base_url, headers=stalled.headers) as stalled_client,
        httpx.Client(base_url=server.base_url, headers=other.headers) as other_client,
    ):
        slow_receiver.delay_s = 6.0
        subscribe(stalled_client, slow_receiver.url)
        post_invoices(server, stalled, stalled_firm, count=6, threads=1)
        slow_receiver.wait_for(1)
        subscribe(other_client, receiver.url)
        post_invoices(server, other, other_firm, count=1, threads=1)
        receiver.wait_for(1)
        assert slow_receiver.answered == 0, "the other partner's event waited for a slot"
        assert slow_receiver.most_in_flight <= 2
