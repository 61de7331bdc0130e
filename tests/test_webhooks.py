"""Webhooks end to end: the API, a real receiver on loopback, and the dispatcher."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook as Verifier

from partnerpay.config import Settings
from partnerpay.db import Database, plain_postgres_connection
from partnerpay.events.models import DeliveryStatus, Topic, WebhookDelivery
from partnerpay.events.outbox import NOTIFY_CHANNEL, emit_event
from partnerpay.events.service import get_event, redeliver_event
from partnerpay.webhooks.schemas import WebhookIn
from partnerpay.webhooks.sender import NOT_SENT, Attempt, Outcome
from partnerpay.webhooks.service import create_webhook
from partnerpay.webhooks.tasks import claim_due, next_due_in, record_outcomes
from tests.receiver import Receiver
from tests.support import (
    API,
    Firm,
    Server,
    create_partner,
    invoice_body,
    wait_until,
)

INVOICE_TOPICS = ["invoice.created", "invoice.updated"]


def register(client: httpx.Client, url: str, **fields: Any) -> dict[str, Any]:
    body = {"name": "billing", "url": url, "events": INVOICE_TOPICS, **fields}
    response = client.post(f"{API}/webhooks", json=body)
    assert response.status_code == 200, response.text
    webhook: dict[str, Any] = response.json()["webhook"]
    return webhook


def events_of(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = client.get(f"{API}/events", params=params)
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def test_topics_are_listed(client: httpx.Client) -> None:
    response = client.get(f"{API}/events/topics")
    assert response.json() == {
        "event_topics": [
            "invoice.created",
            "invoice.updated",
            "firm.status.updated",
            "payment.succeeded",
            "payment.failed",
            "payment.refunded",
            "payout.created",
            "payout.updated",
            "firm.bank-account.created",
            "firm.bank-account.updated",
            "firm.bank-account.deleted",
        ]
    }


def test_webhook_lifecycle(client: httpx.Client, receiver: Receiver) -> None:
    created = register(client, receiver.url, description="all invoices")
    assert created["secret"].startswith("whsec_")
    assert created["status"] == "Enabled"
    assert created["created_at"] == created["updated_at"]
    webhook_id = created["webhook_id"]

    listed = client.get(f"{API}/webhooks").json()["webhooks"]
    assert [w["webhook_id"] for w in listed] == [webhook_id]
    assert "secret" not in listed[0]

    changed = client.put(
        f"{API}/webhooks", json={"webhook_id": webhook_id, "status": "Disabled", "name": "new"}
    )
    assert changed.status_code == 200
    assert changed.json()["webhook"]["status"] == "Disabled"
    assert changed.json()["webhook"]["name"] == "new"
    assert changed.json()["webhook"]["url"] == receiver.url

    assert client.delete(f"{API}/webhooks/{webhook_id}").status_code == 204
    assert client.delete(f"{API}/webhooks/{webhook_id}").status_code == 404
    assert client.get(f"{API}/webhooks").json()["webhooks"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": ["invoice.deleted"]}, "events[0]"),
        ({"events": []}, "events"),
        ({"url": "ftp://example.com/hook"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"authentication": {"type": "magic", "data": {}}}, "authentication"),
    ],
)
def test_bad_webhooks_are_refused(
    client: httpx.Client, receiver: Receiver, body: dict[str, Any], field: str
) -> None:
    payload = {"name": "x", "url": receiver.url, "events": INVOICE_TOPICS, **body}
    response = client.post(f"{API}/webhooks", json=payload)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    fields = [f["field"] for f in response.json()["error_context"]["fields"]]
    assert any(f == field or f.startswith(field) for f in fields), fields
    assert client.get(f"{API}/webhooks").json()["webhooks"] == []


def test_same_url_and_events_twice_conflicts(client: httpx.Client, receiver: Receiver) -> None:
    register(client, receiver.url)
    again = client.post(
        f"{API}/webhooks",
        json={"name": "again", "url": receiver.url, "events": list(reversed(INVOICE_TOPICS))},
    )
    assert again.status_code == 409
    assert again.json()["type"] == "webhook_already_exists"
    assert len(client.get(f"{API}/webhooks").json()["webhooks"]) == 1


def test_another_partners_webhook_is_not_found(
    client: httpx.Client, server: Server, receiver: Receiver, database: Database
) -> None:
    stranger = create_partner(database)
    webhook_id = register(client, receiver.url)["webhook_id"]
    with httpx.Client(base_url=server.base_url, headers=stranger.headers) as other:
        assert other.delete(f"{API}/webhooks/{webhook_id}").status_code == 404
        put = other.put(f"{API}/webhooks", json={"webhook_id": webhook_id, "name": "mine"})
        assert put.status_code == 404
        assert other.get(f"{API}/webhooks").json()["webhooks"] == []
    assert client.get(f"{API}/webhooks").json()["webhooks"][0]["name"] == "billing"


def test_invoice_events_arrive_signed_and_whole(
    client: httpx.Client, firm: Firm, receiver: Receiver
) -> None:
    secret = register(client, receiver.url)["secret"]
    body = invoice_body(firm)
    invoice = client.post(f"{API}/invoices", json=body).json()["invoice"]

    (created,) = receiver.wait_for(1)
    envelope = Verifier(secret).verify(created.body, created.headers)
    assert envelope["event_type"] == "invoice.created"
    assert created.headers["webhook-id"] == envelope["event_id"]
    fetched = client.get(f"{API}/invoices/{invoice['invoice_id']}").json()["invoice"]
    assert envelope["event"] == fetched

    assert client.post(f"{API}/invoices", json=body).status_code == 200  # no change: no event
    client.post(f"{API}/invoices", json={**body, "amount": "99.99"})
    client.post(f"{API}/invoices/{invoice['invoice_id']}/void")

    received = receiver.wait_for(3)
    assert [r.envelope["event_type"] for r in received] == [
        "invoice.created",
        "invoice.updated",
        "invoice.updated",
    ]
    assert received[1].envelope["event"]["amount"] == "99.99"
    assert received[2].envelope["event"]["status"] == "Voided"
    logged = events_of(client)
    assert [e["topic"] for e in logged] == [r.envelope["event_type"] for r in received]


def test_failed_attempts_are_retried(client: httpx.Client, firm: Firm, receiver: Receiver) -> None:
    receiver.answer = lambda n: 500 if n <= 2 else 200
    register(client, receiver.url)
    client.post(f"{API}/invoices", json=invoice_body(firm))

    received = receiver.wait_for(3)
    assert len({r.headers["webhook-id"] for r in received}) == 1

    def delivered() -> list[dict[str, Any]] | None:
        events = events_of(client, status="sent")
        return events or None

    (event,) = wait_until(delivered, 10, "the event to be logged as sent")
    (delivery,) = event["deliveries"]
    assert delivery["status"] == "sent"
    assert delivery["attempts"] == 3
    assert delivery["last_status_code"] == 200


def test_a_redirect_is_a_failed_attempt_not_followed(
    client: httpx.Client, firm: Firm, receiver: Receiver
) -> None:
    receiver.answer = lambda n: 302 if n == 1 else 200
    register(client, receiver.url)
    client.post(f"{API}/invoices", json=invoice_body(firm))

    first, second = receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.path == second.path == "/hooks"

    def delivered() -> list[dict[str, Any]] | None:
        return events_of(client, status="sent") or None

    (event,) = wait_until(delivered, 10, "the event to be logged as sent")
    assert event["deliveries"][0]["attempts"] == 2


def test_postgresql_dispatchers_are_woken_only_for_events_with_a_subscriber(
    database_url: str, client: httpx.Client, firm: Firm, receiver: Receiver
) -> None:
    """An event nobody subscribes to has nothing to deliver: its commit sends no NOTIFY
    (a round trip per write on the API's busiest path)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("NOTIFY is PostgreSQL's; SQLite dispatchers live in the API process")
    with plain_postgres_connection(database_url) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        assert client.post(f"{API}/invoices", json=invoice_body(firm)).status_code == 200
        register(client, receiver.url)
        assert client.post(f"{API}/invoices", json=invoice_body(firm)).status_code == 200
        # Notifications arrive in commit order: this one comes after any the POSTs sent.
        listener.execute(f"NOTIFY {NOTIFY_CHANNEL}, 'end'")
        payloads = []
        for notification in listener.notifies(timeout=10):
            if notification.payload == "end":
                break
            payloads.append(notification.payload)
    assert payloads == [""]


def test_events_wait_for_a_receiver_that_is_down(client: httpx.Client, firm: Firm) -> None:
    receiver = Receiver()  # not listening yet: connections are refused
    register(client, receiver.url)
    for _ in range(50):
        assert client.post(f"{API}/invoices", json=invoice_body(firm)).status_code == 200

    def all_failed_once() -> bool:
        events = events_of(client, status="pending")
        return len(events) == 50 and all(e["deliveries"][0]["attempts"] >= 1 for e in events)

    wait_until(all_failed_once, 10, "a failed first attempt for every event")
    with receiver.running():
        received = receiver.wait_for(50, deadline_s=20)
    assert len({r.headers["webhook-id"] for r in received}) == 50


def test_authentication_reaches_the_receiver(
    client: httpx.Client, firm: Firm, receiver: Receiver
) -> None:
    basic = {"type": "basic", "data": {"username": "ann", "password": "s3cret"}}
    token = {"type": "token", "data": {"token": "tok-123"}}
    register(client, receiver.url + "/basic", authentication=basic)
    hook = register(client, receiver.url + "/token", authentication=token)
    assert hook["authentication"] == {"type": "token", "add_position": "header", "data": {}}

    client.post(f"{API}/invoices", json=invoice_body(firm))
    received = {r.path: r.headers["authorization"] for r in receiver.wait_for(2)}
    assert received == {
        "/hooks/basic": "Basic " + base64.b64encode(b"ann:s3cret").decode(),
        "/hooks/token": "Bearer tok-123",
    }


def test_event_log_filters_and_redelivery(
    client: httpx.Client, firm: Firm, receiver: Receiver
) -> None:
    register(client, receiver.url)
    first = client.post(f"{API}/invoices", json=invoice_body(firm)).json()["invoice"]
    client.post(f"{API}/invoices/{first['invoice_id']}/adjust-amount", json={"new_amount": "5"})
    receiver.wait_for(2)

    logged = events_of(client)
    assert [e["topic"] for e in logged] == INVOICE_TOPICS
    assert all(e["external_id"] == first["external_id"] for e in logged)
    assert [e["topic"] for e in events_of(client, topic="invoice.updated")] == ["invoice.updated"]
    after_first = events_of(client, since_webhook_event_id=logged[0]["webhook_event_id"])
    assert [e["webhook_event_id"] for e in after_first] == [logged[1]["webhook_event_id"]]
    assert events_of(client, since="2999-01-01T00:00:00Z") == []

    both = client.get(
        f"{API}/events",
        params={
            "since": "2020-01-01T00:00:00Z",
            "since_webhook_event_id": logged[0]["webhook_event_id"],
        },
    )
    assert both.status_code == 400
    assert both.json()["error_context"]["fields"][0]["field"] == "since_webhook_event_id"

    redelivered = client.post(f"{API}/events/{logged[0]['webhook_event_id']}/redeliver")
    assert redelivered.status_code == 200
    received = receiver.wait_for(3)
    assert received[2].headers["webhook-id"] == logged[0]["webhook_event_id"]
    assert received[2].body == received[0].body


def test_another_partners_events_are_invisible(
    client: httpx.Client, server: Server, firm: Firm, receiver: Receiver, database: Database
) -> None:
    register(client, receiver.url)
    client.post(f"{API}/invoices", json=invoice_body(firm))
    (event,) = events_of(client)
    stranger = create_partner(database)
    with httpx.Client(base_url=server.base_url, headers=stranger.headers) as other:
        assert other.get(f"{API}/events").json()["events"] == []
        redeliver = other.post(f"{API}/events/{event['webhook_event_id']}/redeliver")
        assert redeliver.status_code == 404


@dataclass(frozen=True)
class Claimed:
    database: Database
    partner_id: uuid.UUID
    settings: Settings
    attempt: Attempt


def claim_one(database: Database) -> Attempt:
    with database.session() as session:
        (attempt,) = claim_due(session, 10, timedelta(seconds=60))
        session.commit()
    return attempt


@pytest.fixture
def claimed(fresh_database_url: str) -> Iterator[Claimed]:
    """One event for one webhook, its delivery claimed by a dispatcher."""
    database = Database(fresh_database_url)
    partner = create_partner(database)
    settings = Settings(database_url=fresh_database_url)
    with database.session() as session:
        hook = WebhookIn(name="h", url="http://127.0.0.1:9/hook", events=[Topic.INVOICE_CREATED])
        create_webhook(session, partner.id, hook, settings.env)
        emit_event(session, partner.id, Topic.INVOICE_CREATED, "inv-1", {"n": 1})
        session.commit()
    yield Claimed(database, partner.id, settings, claim_one(database))
    database.dispose()


def test_an_outcome_recorded_after_a_redelivery_does_not_undo_it(claimed: Claimed) -> None:
    """The dispatcher records outcomes a moment after sending; a redelivery asked for in
    between must still be sent."""
    database, attempt = claimed.database, claimed.attempt
    with database.unit_of_work() as session:
        redeliver_event(session, claimed.partner_id, str(attempt.event_id))
    with database.session() as session:
        record_outcomes(session, [(attempt, Outcome(200, None))], claimed.settings)
        session.commit()
    again = claim_one(database)
    assert (again.delivery_id, again.number) == (attempt.delivery_id, 1)


def test_a_redelivery_is_queued_even_when_an_outcome_lands_after_it_read_the_event(
    claimed: Claimed,
) -> None:
    """PostgreSQL lets the dispatcher record an outcome between a redelivery's read of the
    event and its write; the delivery must still end up pending (SQLite lets one writer in
    at a time, so there the two cannot interleave)."""
    database, attempt = claimed.database, claimed.attempt
    if database.engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one write transaction at a time")
    with database.unit_of_work() as redelivery:
        event = get_event(redelivery, claimed.partner_id, attempt.event_id)
        assert [delivery.status for delivery in event.deliveries] == [DeliveryStatus.PENDING]
        with database.session() as dispatcher:
            record_outcomes(dispatcher, [(attempt, Outcome(200, None))], claimed.settings)
            dispatcher.commit()
        redeliver_event(redelivery, claimed.partner_id, str(attempt.event_id))
    again = claim_one(database)
    assert (again.delivery_id, again.number) == (attempt.delivery_id, 1)


def test_a_stale_outcome_does_not_settle_the_redelivered_attempt(claimed: Claimed) -> None:
    """After a redelivery the next claim is attempt 1 again; the earlier attempt 1's outcome,
    recorded late, must not count for it: here the new attempt fails, and must be retried."""
    database, stale = claimed.database, claimed.attempt
    with database.unit_of_work() as session:
        redeliver_event(session, claimed.partner_id, str(stale.event_id))
    fresh = claim_one(database)
    assert (fresh.delivery_id, fresh.number) == (stale.delivery_id, stale.number)
    with database.session() as session:
        record_outcomes(session, [(stale, Outcome(200, None))], claimed.settings)
        record_outcomes(session, [(fresh, Outcome(500, None))], claimed.settings)
        session.commit()
    with database.session() as session:
        delivery = session.get(WebhookDelivery, fresh.delivery_id)
        assert delivery is not None
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
            DeliveryStatus.PENDING,
            1,
            500,
        )
        assert delivery.next_attempt_at is not None


def test_a_claim_passes_over_a_webhook_at_its_share(claimed: Claimed) -> None:
    """With one attempt of its webhook under way and two more deliveries due, a share of two
    lets one more be claimed; the other stays due and unleased, for a later claim."""
    database, hook = claimed.database, claimed.attempt.webhook_id
    with database.session() as session:
        for n in (2, 3):
            emit_event(session, claimed.partner_id, Topic.INVOICE_CREATED, f"inv-{n}", {"n": n})
        session.commit()
    lease = timedelta(seconds=60)
    with database.session(read_only=True) as session:
        assert next_due_in(session) == 0
        assert next_due_in(session, full=[hook]) is None  # wait for an attempt to finish
    with database.session() as session:
        assert claim_due(session, 10, lease, {hook: 2}, per_webhook=2) == []
        (taken,) = claim_due(session, 10, lease, {hook: 1}, per_webhook=2)
        session.commit()
    left = claim_one(database)
    assert (taken.number, left.number) == (1, 1)
    assert taken.delivery_id != left.delivery_id


def test_an_attempt_handed_back_unsent_keeps_its_place(claimed: Claimed) -> None:
    """An attempt too late to start goes back as if never claimed: its due time, no attempt
    time, and the same attempt number when it is claimed again."""
    database, attempt = claimed.database, claimed.attempt
    with database.session() as session:
        record_outcomes(session, [(attempt, NOT_SENT)], claimed.settings)
        session.commit()
    with database.session() as session:
        delivery = session.get(WebhookDelivery, attempt.delivery_id)
        assert delivery is not None
        assert (delivery.attempts, delivery.last_attempt_at) == (0, None)
        assert delivery.next_attempt_at == attempt.due_at
    again = claim_one(database)
    assert (again.delivery_id, again.number) == (attempt.delivery_id, 1)
