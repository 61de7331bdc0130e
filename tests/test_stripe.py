"""Payments through the Stripe gateway, against localstripe (a stateful Stripe emulator) on
a loopback port: the payer's card is checked by the emulator as Stripe.js would have it
checked, partnerpay creates and confirms the PaymentIntent, and the emulator's signed
webhooks arrive at ``/webhooks/stripe`` by real HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe

from partnerpay.db import Database
from partnerpay.payments.models import Payment, ProcessorEventRecord
from tests.stripe_emulator import PUBLISHABLE_KEY, SECRET_KEY, StripeEmulator
from tests.support import (
    API,
    Firm,
    Partner,
    Server,
    create_firm,
    invoice_body,
)

SUCCESS_CARD = "4242424242424242"
DECLINED_AT_SETUP = "4000000000000002"
DECLINED_AT_CHARGE = "4000000000000341"
WEBHOOK_DEADLINE_S = 15.0


@pytest.fixture
def stripe_client(stripe_server: Server, partner: Partner) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stripe_server.base_url, headers=partner.headers, timeout=30) as http:
        yield http


@pytest.fixture
def payer(stripe_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stripe_server.base_url, timeout=30) as http:
        yield http


@pytest.fixture
def connected_firm(database: Database, partner: Partner) -> Firm:
    return create_firm(database, partner, trust_account=True, connected=True)


def new_invoice(client: httpx.Client, firm: Firm, **overrides: Any) -> dict[str, Any]:
    response = client.post(f"{API}/invoices", json=invoice_body(firm, **overrides))
    assert response.status_code == 200, response.text
    invoice: dict[str, Any] = response.json()["invoice"]
    return invoice


def card_token(
    emulator: StripeEmulator, payer: httpx.Client, invoice_id: str, number: str = SUCCESS_CARD
) -> str:
    """What the page's Stripe.js does: a SetupIntent's secret from partnerpay, then the
    card confirmed on it, from the payer to Stripe (the emulator) alone."""
    setup = payer.post(f"/pay/{invoice_id}/card-setup", json={})
    assert setup.status_code == 200, setup.text
    secret = setup.json()["client_secret"]
    intent = secret.split("_secret_")[0]
    confirmed = httpx.post(
        f"{emulator.base_url}/v1/setup_intents/{intent}/confirm",
        json={
            "key": PUBLISHABLE_KEY,
            "client_secret": secret,
            "payment_method_data": {
                "type": "card",
                "card": {"number": number, "exp_month": "12", "exp_year": "2030", "cvc": "123"},
            },
        },
    )
    assert confirmed.status_code == 200, confirmed.text
    token: str = confirmed.json()["payment_method"]
    return token


def pay(payer: httpx.Client, invoice_id: str, token: str, key: str | None = None) -> httpx.Response:
    body = {"method": "Card", "card_token": token, "idempotency_key": key or str(uuid.uuid4())}
    return payer.post(f"/pay/{invoice_id}/payments", json=body)


def fetch(client: httpx.Client, invoice_id: str) -> dict[str, Any]:
    invoice: dict[str, Any] = client.get(f"{API}/invoices/{invoice_id}").json()["invoice"]
    return invoice


def payment_row(database: Database, payment_id: str) -> Payment:
    with database.session(read_only=True) as session:
        payment = session.get(Payment, uuid.UUID(payment_id))
        assert payment is not None
        session.expunge(payment)
        return payment


def events_seen(database: Database) -> set[str]:
    with database.session(read_only=True) as session:
        return set(session.query(ProcessorEventRecord.event_id).scalars())


def test_a_card_pays_the_invoice_through_stripe(
    stripe_emulator: StripeEmulator,
    stripe_client: httpx.Client,
    payer: httpx.Client,
    connected_firm: Firm,
    database: Database,
) -> None:
    invoice = new_invoice(stripe_client, connected_firm)
    token = card_token(stripe_emulator, payer, invoice["invoice_id"])
    response = pay(payer, invoice["invoice_id"], token)
    assert response.status_code == 200, response.text
    payment = response.json()["payment"]
    assert payment["payment_status"] == "Successful"
    assert payment["payment_method_detail"] == "Visa •••• 4242"
    assert fetch(stripe_client, invoice["invoice_id"])["status"] == "Paid"
    row = payment_row(database, payment["payment_id"])
    assert row.gateway == "stripe"
    assert row.processor_reference
    intent = stripe.StripeClient(
        SECRET_KEY, base_addresses={"api": stripe_emulator.base_url}
    ).v1.payment_intents.retrieve(row.processor_reference)
    assert intent.amount == 12345
    assert intent.currency == "aud"
    assert intent.metadata["partnerpay_payment_id"] == payment["payment_id"]
    assert intent.metadata["partnerpay_artifact_id"] == invoice["invoice_id"]
