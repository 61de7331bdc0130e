"""Payments through the Stripe gateway, against localstripe (a stateful Stripe emulator) on
a loopback port: the payer's card is checked by the emulator as Stripe.js would have it
checked, partnerpay creates and confirms the PaymentIntent, and the emulator's signed
webhooks arrive at ``/webhooks/stripe`` by real HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import select

from partnerpay.config import GatewayName, Settings
from partnerpay.db import Database
from partnerpay.firms.models import Firm as FirmRow
from partnerpay.payments.gateway import (
    CardToken,
    PaymentOrder,
    RefundOrder,
    RefundOutcome,
    RefundOutcomeStatus,
)
from partnerpay.payments.gateways.stripe import StripeGateway
from partnerpay.payments.models import Payment, ProcessorEventRecord, Refund
from tests.stripe_emulator import PUBLISHABLE_KEY, SECRET_KEY, WEBHOOK_SECRET, StripeEmulator
from tests.support import (
    API,
    Firm,
    Partner,
    Server,
    assert_problem,
    create_firm,
    free_port,
    invoice_body,
    partner_client,
    wait_until,
)

SUCCESS_CARD = "4242424242424242"
DECLINED_AT_CHARGE = "4000000000000341"
AUTHENTICATED_CARD = "4000002760003184"
WEBHOOK_DEADLINE_S = 15.0


@pytest.fixture(scope="session")
def quiet_stripe_server(
    database_url: str, stripe_emulator: StripeEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server on Stripe that the emulator sends no webhooks to, and that reconciles only
    when told: a Stripe notification that never arrives."""
    log = Path(tmp_path_factory.mktemp("quiet-stripe")) / "server.log"
    env = {**stripe_emulator.gateway_env(), "PARTNERPAY_RUN_DISPATCHER": "false"}
    with Server.start(database_url, log, env=env) as running:
        yield running


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


def as_stripe_js(emulator: StripeEmulator, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """A call the page's Stripe.js makes to Stripe, with the publishable key."""
    response = httpx.post(f"{emulator.base_url}{path}", json={"key": PUBLISHABLE_KEY, **body})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def card_token(
    emulator: StripeEmulator, payer: httpx.Client, invoice_id: str, number: str = SUCCESS_CARD
) -> str:
    """What the page's Stripe.js does: a SetupIntent's secret from partnerpay, then the
    card confirmed on it (3-D Secure completed where the card asks for it), from the payer
    to Stripe (the emulator) alone."""
    setup = payer.post(f"/pay/{invoice_id}/card-setup", json={})
    assert setup.status_code == 200, setup.text
    secret = setup.json()["client_secret"]
    path = f"/v1/setup_intents/{secret.split('_secret_')[0]}/confirm"
    card = {"number": number, "exp_month": "12", "exp_year": "2030", "cvc": "123"}
    confirmed = as_stripe_js(
        emulator,
        path,
        {"client_secret": secret, "payment_method_data": {"type": "card", "card": card}},
    )
    if confirmed["status"] == "requires_action":
        confirmed = as_stripe_js(emulator, path, {"client_secret": secret})
    assert confirmed["status"] == "succeeded"
    token: str = confirmed["payment_method"]
    return token


def authenticate(emulator: StripeEmulator, client_secret: str) -> None:
    """The payer completes 3-D Secure, as Stripe.js's ``confirmCardPayment`` does."""
    intent = client_secret.split("_secret_")[0]
    path = f"/v1/payment_intents/{intent}/_authenticate?success=true"
    assert as_stripe_js(emulator, path, {"client_secret": client_secret})["status"] == "succeeded"


def emulator_client(emulator: StripeEmulator) -> stripe.StripeClient:
    return stripe.StripeClient(SECRET_KEY, base_addresses={"api": emulator.base_url})


def signed_event(event_type: str, thing: dict[str, Any]) -> tuple[bytes, str]:
    """A Stripe event about ``thing``, signed as Stripe signs it (``Stripe-Signature``:
    a timestamp and an HMAC-SHA256 of it and the body with the endpoint's secret)."""
    at = int(time.time())  # Stripe's signatures are checked against the current time
    payload = json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "type": event_type,
            "created": at,
            "livemode": False,
            "data": {"object": thing},
        }
    ).encode()
    digest = hmac.new(WEBHOOK_SECRET.encode(), f"{at}.".encode() + payload, hashlib.sha256)
    return payload, f"t={at},v1={digest.hexdigest()}"


def notify(server: Server, payload: bytes, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return httpx.post(f"{server.base_url}/webhooks/stripe", content=payload, headers=headers)


def topics_of(client: httpx.Client, invoice: dict[str, Any]) -> list[str]:
    events = client.get(f"{API}/events").json()["events"]
    return [e["topic"] for e in events if e["external_id"] == invoice["external_id"]]


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
        return set(session.scalars(select(ProcessorEventRecord.event_id)))


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


def test_stripes_webhook_arrives_and_records_nothing_more(
    stripe_client: httpx.Client,
    stripe_emulator: StripeEmulator,
    payer: httpx.Client,
    connected_firm: Firm,
    database: Database,
) -> None:
    invoice = new_invoice(stripe_client, connected_firm)
    token = card_token(stripe_emulator, payer, invoice["invoice_id"])
    payment = pay(payer, invoice["invoice_id"], token).json()["payment"]
    before = events_seen(database)
    # localstripe sends payment_intent.succeeded a second after the PaymentIntent succeeds.
    wait_until(lambda: events_seen(database) - before, WEBHOOK_DEADLINE_S, "Stripe's webhook")
    assert payment_row(database, payment["payment_id"]).status == "Successful"
    assert topics_of(stripe_client, invoice).count("payment.succeeded") == 1


def test_a_card_declined_by_the_bank_then_another_paid(
    stripe_client: httpx.Client,
    stripe_emulator: StripeEmulator,
    payer: httpx.Client,
    connected_firm: Firm,
) -> None:
    invoice = new_invoice(stripe_client, connected_firm)
    token = card_token(stripe_emulator, payer, invoice["invoice_id"], DECLINED_AT_CHARGE)
    declined = pay(payer, invoice["invoice_id"], token)
    assert_problem(declined, 402, "card_declined")
    assert fetch(stripe_client, invoice["invoice_id"])["status"] == "Submitted"
    token = card_token(stripe_emulator, payer, invoice["invoice_id"])
    assert pay(payer, invoice["invoice_id"], token).status_code == 200
    assert fetch(stripe_client, invoice["invoice_id"])["status"] == "Paid"
    topics = topics_of(stripe_client, invoice)
    assert topics.count("payment.failed") == 1
    assert topics.count("payment.succeeded") == 1


def test_3d_secure_completes_on_the_pages_return(
    stripe_client: httpx.Client,
    stripe_emulator: StripeEmulator,
    payer: httpx.Client,
    connected_firm: Firm,
    database: Database,
) -> None:
    invoice = new_invoice(stripe_client, connected_firm)
    token = card_token(stripe_emulator, payer, invoice["invoice_id"], AUTHENTICATED_CARD)
    started = pay(payer, invoice["invoice_id"], token).json()
    assert started["payment"]["payment_status"] == "RequiresAction"
    assert started["next_action"]["type"] == "authenticate"
    assert fetch(stripe_client, invoice["invoice_id"])["status"] == "Submitted"
    authenticate(stripe_emulator, started["next_action"]["client_secret"])
    payment_id = started["payment"]["payment_id"]
    confirmed = payer.post(f"/pay/{invoice['invoice_id']}/payments/{payment_id}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["payment"]["payment_status"] == "Successful"
    assert fetch(stripe_client, invoice["invoice_id"])["status"] == "Paid"
    before = events_seen(database)
    wait_until(lambda: events_seen(database) - before, WEBHOOK_DEADLINE_S, "Stripe's webhook")
    again = payer.post(f"/pay/{invoice['invoice_id']}/payments/{payment_id}/confirm")
    assert again.json()["payment"]["payment_status"] == "Successful"
    assert topics_of(stripe_client, invoice).count("payment.succeeded") == 1


def reconcile(server: Server, database_url: str, stripe_emulator: StripeEmulator) -> str:
    """``partnerpay admin reconcile-payments``, with the server's settings."""
    env = {
        **os.environ,
        **stripe_emulator.gateway_env(),
        "PARTNERPAY_DATABASE_URL": database_url,
        "PARTNERPAY_PUBLIC_BASE_URL": server.base_url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "partnerpay", "admin", "reconcile-payments"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


@pytest.fixture
def quiet_client(quiet_stripe_server: Server, partner: Partner) -> Iterator[httpx.Client]:
    with partner_client(quiet_stripe_server, partner) as http:
        yield http


def payment_awaiting_stripe(
    client: httpx.Client, emulator: StripeEmulator, firm: Firm
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An invoice whose payer has authenticated with their bank, though partnerpay has not
    heard of it: the page was closed before its return, and no notification came."""
    invoice = new_invoice(client, firm)
    token = card_token(emulator, client, invoice["invoice_id"], AUTHENTICATED_CARD)
    started = pay(client, invoice["invoice_id"], token).json()
    authenticate(emulator, started["next_action"]["client_secret"])
    return invoice, started["payment"]


def succeeded_event(
    emulator: StripeEmulator, database: Database, payment: dict[str, Any]
) -> tuple[bytes, str]:
    """Stripe's ``payment_intent.succeeded`` about this payment's PaymentIntent, signed."""
    reference = payment_row(database, payment["payment_id"]).processor_reference
    intent = emulator_client(emulator).v1.payment_intents.retrieve(str(reference))
    return signed_event("payment_intent.succeeded", intent.to_dict())


def test_a_lost_stripe_webhook_is_recovered_by_reconciliation(
    quiet_stripe_server: Server,
    quiet_client: httpx.Client,
    stripe_emulator: StripeEmulator,
    connected_firm: Firm,
    database_url: str,
) -> None:
    invoice, _payment = payment_awaiting_stripe(quiet_client, stripe_emulator, connected_firm)
    assert fetch(quiet_client, invoice["invoice_id"])["status"] == "Submitted"
    output = reconcile(quiet_stripe_server, database_url, stripe_emulator)
    assert "changed" in output
    assert fetch(quiet_client, invoice["invoice_id"])["status"] == "Paid"
    assert topics_of(quiet_client, invoice).count("payment.succeeded") == 1
    reconcile(quiet_stripe_server, database_url, stripe_emulator)
    assert topics_of(quiet_client, invoice).count("payment.succeeded") == 1


def test_the_same_stripe_event_twice_records_one_payment(
    quiet_stripe_server: Server,
    quiet_client: httpx.Client,
    stripe_emulator: StripeEmulator,
    connected_firm: Firm,
    database: Database,
) -> None:
    invoice, payment = payment_awaiting_stripe(quiet_client, stripe_emulator, connected_firm)
    payload, signature = succeeded_event(stripe_emulator, database, payment)
    for _ in range(2):
        assert notify(quiet_stripe_server, payload, signature).status_code == 200
    assert fetch(quiet_client, invoice["invoice_id"])["status"] == "Paid"
    assert topics_of(quiet_client, invoice).count("payment.succeeded") == 1
    assert json.loads(payload)["id"] in events_seen(database)


def test_a_forged_stripe_event_changes_nothing(
    quiet_stripe_server: Server,
    quiet_client: httpx.Client,
    stripe_emulator: StripeEmulator,
    connected_firm: Firm,
    database: Database,
) -> None:
    invoice, payment = payment_awaiting_stripe(quiet_client, stripe_emulator, connected_firm)
    payload, signature = succeeded_event(stripe_emulator, database, payment)
    forged = signature[:-4] + ("0000" if not signature.endswith("0000") else "1111")
    seen = events_seen(database)
    for bad in (forged, None, "t=1,v1=00"):
        assert_problem(notify(quiet_stripe_server, payload, bad), 400, "invalid_signature")
    tampered = payload.replace(b'"succeeded"', b'"succeeded" ', 1)
    assert_problem(notify(quiet_stripe_server, tampered, signature), 400, "invalid_signature")
    assert events_seen(database) == seen
    assert payment_row(database, payment["payment_id"]).status == "RequiresAction"
    assert fetch(quiet_client, invoice["invoice_id"])["status"] == "Submitted"


def test_card_numbers_are_refused_where_stripe_takes_cards(
    stripe_client: httpx.Client, payer: httpx.Client, connected_firm: Firm, database: Database
) -> None:
    invoice = new_invoice(stripe_client, connected_firm)
    card = {"number": SUCCESS_CARD, "exp_month": 12, "exp_year": 2099, "cvc": "123", "name": "F"}
    body = {"method": "Card", "card": card, "idempotency_key": "k"}
    refused = payer.post(f"/pay/{invoice['invoice_id']}/payments", json=body)
    assert_problem(refused, 400, "card_details_not_accepted", "card")
    assert SUCCESS_CARD not in refused.text
    forged = pay(payer, invoice["invoice_id"], "pm_forged")
    assert_problem(forged, 400, "invalid_card_token", "card_token")
    debit = {"account_name": "F", "bsb": "062-000", "account_number": "12345678"}
    by_debit = {"method": "DirectDebit", "direct_debit": debit, "idempotency_key": "d"}
    not_offered = payer.post(f"/pay/{invoice['invoice_id']}/payments", json=by_debit)
    assert_problem(not_offered, 400, "method_not_allowed", "method")
    with database.session(read_only=True) as session:
        paid = select(Payment.id).where(Payment.artifact_id == uuid.UUID(invoice["invoice_id"]))
        assert session.scalars(paid).all() == []


def test_an_account_without_its_own_stripe_account_takes_no_payment(
    stripe_client: httpx.Client, payer: httpx.Client, firm: Firm
) -> None:
    invoice = new_invoice(stripe_client, firm)  # ``firm``'s accounts are not connected
    refused = payer.post(f"/pay/{invoice['invoice_id']}/card-setup", json={})
    assert_problem(refused, 409, "settlement_account_not_connected")
    page = payer.get(f"/pay/{invoice['invoice_id']}")
    assert "Not available" in page.text
    assert 'id="pay-form"' not in page.text


def test_stripe_unreachable_is_a_503_to_retry(
    database_url: str,
    connected_firm: Firm,
    partner: Partner,
    tmp_path: Path,
    stripe_emulator: StripeEmulator,
) -> None:
    down = {
        **stripe_emulator.gateway_env(),
        "PARTNERPAY_STRIPE_API_BASE": f"http://127.0.0.1:{free_port()}",
        "PARTNERPAY_RUN_DISPATCHER": "false",
        "PARTNERPAY_STRIPE_TIMEOUT": "2",
    }
    with (
        Server.start(database_url, tmp_path / "server.log", env=down) as server,
        httpx.Client(base_url=server.base_url, headers=partner.headers, timeout=60) as client,
    ):
        invoice = new_invoice(client, connected_firm)
        unavailable = client.post(f"/pay/{invoice['invoice_id']}/card-setup", json={})
        assert_problem(unavailable, 503, "gateway_unavailable")
        assert unavailable.headers["Retry-After"] == "5"


def test_every_stripe_call_is_made_on_the_accounts_own_stripe_account(
    stripe_emulator: StripeEmulator,
) -> None:
    """localstripe ignores ``Stripe-Account``: what the adapter sends is read off the
    library's own HTTP client."""
    sent: list[tuple[str, dict[str, str]]] = []

    class Recording(stripe.RequestsClient):
        def request(self, method: str, url: str, headers: Any, post_data: Any = None) -> Any:
            sent.append((url, dict(headers or {})))
            return super().request(method, url, headers, post_data)

    settings = Settings(
        **{
            k.removeprefix("PARTNERPAY_").lower(): v
            for k, v in stripe_emulator.gateway_env().items()
        }
    )
    gateway = StripeGateway(settings, http_client=Recording())
    secret = gateway.prepare_card("acct_trust")
    path = f"/v1/setup_intents/{secret.split('_secret_')[0]}/confirm"
    card = {"number": SUCCESS_CARD, "exp_month": "12", "exp_year": "2030", "cvc": "123"}
    token = as_stripe_js(
        stripe_emulator,
        path,
        {"client_secret": secret, "payment_method_data": {"type": "card", "card": card}},
    )["payment_method"]
    order = PaymentOrder(
        uuid.uuid4(), uuid.uuid4(), "Invoice", 1000, 0, "AUD", "key-1", "acct_trust"
    )
    outcome = gateway.start_payment(order, CardToken(token))
    assert outcome.status == "succeeded"
    assert len(sent) == 3  # the SetupIntent, the card's details, the PaymentIntent
    assert {headers.get("Stripe-Account") for _url, headers in sent} == {"acct_trust"}
    payment_intents = [h for url, h in sent if url.endswith("/v1/payment_intents")]
    assert [h.get("Idempotency-Key") for h in payment_intents] == ["key-1"]


def test_production_refuses_the_sandbox_gateway(database_url: str) -> None:
    env = {**os.environ, "PARTNERPAY_DATABASE_URL": database_url, "PARTNERPAY_ENV": "production"}
    env.pop("PARTNERPAY_GATEWAY", None)
    refused = subprocess.run(
        [sys.executable, "-m", "partnerpay", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "PARTNERPAY_GATEWAY=stripe" in refused.stderr
    without_keys = {**env, "PARTNERPAY_GATEWAY": "stripe"}
    refused = subprocess.run(
        [sys.executable, "-m", "partnerpay", "worker"],
        env=without_keys,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "PARTNERPAY_STRIPE_SECRET_KEY" in refused.stderr


def test_the_dispatcher_reconciles_by_itself(
    database_url: str,
    stripe_emulator: StripeEmulator,
    connected_firm: Firm,
    partner: Partner,
    tmp_path: Path,
) -> None:
    """No webhook, no page return, no operator: the dispatcher's periodic reconciliation
    (every PARTNERPAY_RECONCILE_INTERVAL seconds) still gets the invoice paid."""
    env = {**stripe_emulator.gateway_env(), "PARTNERPAY_RECONCILE_INTERVAL": "0.5"}
    with (
        Server.start(database_url, tmp_path / "server.log", env=env) as server,
        httpx.Client(base_url=server.base_url, headers=partner.headers, timeout=30) as client,
    ):
        invoice, _payment = payment_awaiting_stripe(client, stripe_emulator, connected_firm)
        wait_until(
            lambda: fetch(client, invoice["invoice_id"])["status"] == "Paid",
            WEBHOOK_DEADLINE_S,
            "the periodic reconciliation",
        )
        assert topics_of(client, invoice).count("payment.succeeded") == 1


# --- refunds ------------------------------------------------------------------------------


def emulator_refunds(emulator: StripeEmulator, payment_intent: str) -> list[Any]:
    """The emulator's Refund objects of a PaymentIntent."""
    client = stripe.StripeClient(SECRET_KEY, base_addresses={"api": emulator.base_url})
    return list(client.v1.refunds.list(params={"payment_intent": payment_intent}).data)


def refund(
    client: httpx.Client, payment_id: str, amount: str, key: str | None = None
) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(
        f"{API}/payments/{payment_id}/refunds", json={"refund_amount": amount}, headers=headers
    )


def paid_through_stripe(
    emulator: StripeEmulator, client: httpx.Client, payer: httpx.Client, firm: Firm
) -> tuple[dict[str, Any], dict[str, Any]]:
    invoice = new_invoice(client, firm)
    response = pay(payer, invoice["invoice_id"], card_token(emulator, payer, invoice["invoice_id"]))
    assert response.status_code == 200, response.text
    payment: dict[str, Any] = response.json()["payment"]
    assert payment["payment_status"] == "Successful"
    return invoice, payment


def test_a_full_refund_through_stripe(
    stripe_emulator: StripeEmulator,
    stripe_client: httpx.Client,
    payer: httpx.Client,
    connected_firm: Firm,
    database: Database,
) -> None:
    invoice, payment = paid_through_stripe(stripe_emulator, stripe_client, payer, connected_firm)
    made = refund(stripe_client, payment["payment_id"], "123.45")
    assert made.status_code == 201, made.text
    assert (made.json()["refund"]["status"], made.json()["refund"]["refund_amount"]) == (
        "Complete",
        "123.45",
    )
    intent = payment_row(database, payment["payment_id"]).processor_reference
    assert intent is not None
    (at_stripe,) = emulator_refunds(stripe_emulator, intent)
    assert (at_stripe.amount, at_stripe.payment_intent, at_stripe.status) == (
        12345,
        intent,
        "succeeded",
    )
    assert at_stripe.metadata["partnerpay_refund_id"] == made.json()["refund"]["refund_id"]
    with database.session(read_only=True) as session:
        row = session.get_one(Refund, uuid.UUID(made.json()["refund"]["refund_id"]))
        assert (row.gateway, row.processor_reference) == ("stripe", at_stripe.id)
    (line,) = fetch(stripe_client, invoice["invoice_id"])["payments"]
    assert line["refunded"] == "123.45"


def test_partial_refunds_through_stripe_give_back_their_share_of_the_surcharge(
    stripe_emulator: StripeEmulator,
    stripe_client: httpx.Client,
    payer: httpx.Client,
    connected_firm: Firm,
    database: Database,
) -> None:
    with database.unit_of_work() as session:
        row = session.get_one(FirmRow, connected_firm.id)
        row.surcharge_enabled, row.surcharge_percent = True, "1.5"
    invoice, payment = paid_through_stripe(stripe_emulator, stripe_client, payer, connected_firm)
    assert payment["total_charged"] == "125.30"
    intent = payment_row(database, payment["payment_id"]).processor_reference
    assert intent is not None

    first = refund(stripe_client, payment["payment_id"], "41.15", key="part-1")
    assert first.status_code == 201, first.text
    assert first.json()["refund"]["surcharge_amount"] == "0.62"
    again = refund(stripe_client, payment["payment_id"], "41.15", key="part-1")
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["idempotent-replayed"] == "true"
    assert [r.amount for r in emulator_refunds(stripe_emulator, intent)] == [4177]

    rest = refund(stripe_client, payment["payment_id"], "82.30")
    assert rest.status_code == 201, rest.text
    assert rest.json()["refund"]["surcharge_amount"] == "1.23"
    at_stripe = emulator_refunds(stripe_emulator, intent)
    ours = (first.json()["refund"]["refund_id"], rest.json()["refund"]["refund_id"])
    assert {r.metadata["partnerpay_refund_id"]: r.amount for r in at_stripe} == {
        ours[0]: 4115 + 62,
        ours[1]: 8230 + 123,
    }
    assert sum(r.amount for r in at_stripe) == 12530  # all that was charged, to the cent
    assert {r.payment_intent for r in at_stripe} == {intent}
    assert refund(stripe_client, payment["payment_id"], "0.01").status_code == 400
    (line,) = fetch(stripe_client, invoice["invoice_id"])["payments"]
    assert line["refunded"] == "123.45"


def test_a_refund_stripe_refuses_is_failed_not_an_error(stripe_emulator: StripeEmulator) -> None:
    settings = Settings(
        gateway=GatewayName.STRIPE,
        stripe_secret_key=SECRET_KEY,
        stripe_publishable_key=PUBLISHABLE_KEY,
        stripe_webhook_secret="whsec_unused",
        stripe_api_base=stripe_emulator.base_url,
    )
    order = RefundOrder(
        refund_id=uuid.uuid4(),
        payment_reference="pi_nothing_of_this_id",
        amount_minor=100,
        currency="AUD",
        idempotency_key=f"partnerpay-refund-{uuid.uuid4()}",
        account=None,
    )
    outcome = StripeGateway(settings).refund(order)
    assert outcome == RefundOutcome(RefundOutcomeStatus.FAILED)
