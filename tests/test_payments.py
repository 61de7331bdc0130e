"""Payments through the payer's JSON call and the partner's API, with webhooks."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import threading
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect, text

from partnerpay.db import Database
from partnerpay.firms.models import Firm as FirmRow
from partnerpay.firms.models import FirmStatus
from partnerpay.firms.service import set_firm_status
from partnerpay.payments.models import Payment
from tests.receiver import Receiver
from tests.support import (
    API,
    Firm,
    Partner,
    Server,
    assert_problem,
    create_firm,
    create_invoice,
    create_partner,
    fullwidth,
    invoice_body,
)

SUCCESS_CARD = "4242 4242 4242 4242"
DECLINED_CARD = "4000 0000 0000 0002"
NO_FUNDS_CARD = "4000000000009995"


def card(number: str = SUCCESS_CARD, **overrides: Any) -> dict[str, Any]:
    return {
        "number": number,
        "exp_month": 12,
        "exp_year": "2099",
        "cvc": "123",
        "name": "Frank",
    } | overrides


def pay(
    anonymous: httpx.Client, invoice_id: str, key: str | None = None, **fields: Any
) -> httpx.Response:
    body = {"method": "Card", "card": card(), "idempotency_key": key or str(uuid.uuid4())}
    return anonymous.post(f"/pay/{invoice_id}/payments", json=body | fields)


def new_invoice(client: httpx.Client, firm: Firm, **overrides: Any) -> dict[str, Any]:
    body = invoice_body(firm, payment_methods_override=["Card", "DirectDebit"]) | overrides
    response = client.post(f"{API}/invoices", json=body)
    assert response.status_code == 200, response.text
    invoice: dict[str, Any] = response.json()["invoice"]
    return invoice


def fetch(client: httpx.Client, invoice_id: str) -> dict[str, Any]:
    invoice: dict[str, Any] = client.get(f"{API}/invoices/{invoice_id}").json()["invoice"]
    return invoice


def settle_payments(server: Server, database_url: str) -> None:
    """``partnerpay admin settle-payments``, run with the server's settings."""
    env = {"PARTNERPAY_DATABASE_URL": database_url, "PARTNERPAY_PUBLIC_BASE_URL": server.base_url}
    subprocess.run(
        [sys.executable, "-m", "partnerpay", "admin", "settle-payments"],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )


def subscribe_all(client: httpx.Client, url: str) -> None:
    topics = ["invoice.updated", "payment.succeeded", "payment.failed"]
    response = client.post(f"{API}/webhooks", json={"name": "all", "url": url, "events": topics})
    assert response.status_code == 200


def test_card_payment_pays_the_invoice(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm, receiver: Receiver
) -> None:
    subscribe_all(client, receiver.url)
    invoice = new_invoice(client, firm)
    response = pay(anonymous, invoice["invoice_id"])
    assert response.status_code == 200, response.text
    payment = response.json()["payment"]
    assert payment["amount"] == "123.45"
    assert payment["total_charged"] == "123.45"
    assert payment["payment_status"] == "Successful"
    assert payment["payment_method_detail"] == "Visa •••• 4242"

    paid = fetch(client, invoice["invoice_id"])
    assert paid["status"] == "Paid"
    assert paid["amount_due"] == "0.00"
    (line,) = paid["payments"]
    assert line["payment_id"] == payment["payment_id"]
    assert line["received"] == "123.45"
    assert line["artifact_type"] == "Invoice"
    assert line["artifact_id"] == invoice["invoice_id"]

    received = receiver.wait_for(2)
    assert sorted(r.envelope["event_type"] for r in received) == [
        "invoice.updated",
        "payment.succeeded",
    ]
    updated = next(r for r in received if r.envelope["event_type"] == "invoice.updated")
    assert updated.envelope["event"] == paid


@pytest.mark.parametrize(
    ("number", "decline"),
    [(DECLINED_CARD, "card_declined"), (NO_FUNDS_CARD, "insufficient_funds")],
)
def test_declined_cards_leave_the_invoice_unpaid(
    client: httpx.Client,
    anonymous: httpx.Client,
    firm: Firm,
    receiver: Receiver,
    number: str,
    decline: str,
) -> None:
    subscribe_all(client, receiver.url)
    invoice = new_invoice(client, firm)
    response = pay(anonymous, invoice["invoice_id"], card=card(number))
    assert response.status_code == 402
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == decline
    assert response.json()["error_context"]["decline_code"] == decline

    unpaid = fetch(client, invoice["invoice_id"])
    assert (unpaid["status"], unpaid["amount_due"], unpaid["payments"]) == (
        "Submitted",
        "123.45",
        [],
    )
    (failed,) = receiver.wait_for(1)
    assert failed.envelope["event_type"] == "payment.failed"
    assert failed.envelope["event"]["decline_code"] == decline


def test_same_idempotency_key_charges_once(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm
) -> None:
    invoice = new_invoice(client, firm)
    first = pay(anonymous, invoice["invoice_id"], key="click-1", amount="10.00")
    second = pay(anonymous, invoice["invoice_id"], key="click-1", amount="10.00")
    assert second.status_code == 200
    assert second.json() == first.json()
    after = fetch(client, invoice["invoice_id"])
    assert after["amount_due"] == "113.45"
    assert len(after["payments"]) == 1


def test_concurrent_payments_never_exceed_the_amount_due(
    server: Server, client: httpx.Client, firm: Firm
) -> None:
    invoice = new_invoice(client, firm)
    start = threading.Barrier(8)
    statuses: list[int] = []

    def attempt() -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as payer:
            start.wait()
            statuses.append(pay(payer, invoice["invoice_id"]).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [409] * 7
    after = fetch(client, invoice["invoice_id"])
    assert (after["amount_due"], len(after["payments"])) == ("0.00", 1)


def test_partial_payments_lower_the_amount_due(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm
) -> None:
    invoice = new_invoice(client, firm)
    assert pay(anonymous, invoice["invoice_id"], amount="23.45").status_code == 200
    partly = fetch(client, invoice["invoice_id"])
    assert (partly["status"], partly["amount_due"]) == ("Submitted", "100.00")

    too_much = pay(anonymous, invoice["invoice_id"], amount="100.01")
    assert too_much.status_code == 400
    assert too_much.json()["error_context"]["fields"][0]["field"] == "amount"

    below_paid = client.post(
        f"{API}/invoices/{invoice['invoice_id']}/adjust-amount", json={"new_amount": "20"}
    )
    assert below_paid.status_code == 409
    assert pay(anonymous, invoice["invoice_id"]).json()["payment"]["amount"] == "100.00"
    assert fetch(client, invoice["invoice_id"])["status"] == "Paid"


def test_direct_debit_is_authorised_until_settled(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm, server: Server, database_url: str
) -> None:
    invoice = new_invoice(client, firm)
    account = {"account_name": "Frank", "bsb": "062-000", "account_number": "12345678"}
    response = pay(
        anonymous, invoice["invoice_id"], method="DirectDebit", card=None, direct_debit=account
    )
    assert response.status_code == 200, response.text
    assert response.json()["payment"]["payment_status"] == "Processing"
    assert fetch(client, invoice["invoice_id"])["status"] == "Authorised"

    settle_payments(server, database_url)
    settled = fetch(client, invoice["invoice_id"])
    assert (settled["status"], settled["amount_due"]) == ("Paid", "0.00")


def test_paid_and_voided_invoices_take_no_payment_and_no_update(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm
) -> None:
    voided = new_invoice(client, firm)
    client.post(f"{API}/invoices/{voided['invoice_id']}/void")
    refused = pay(anonymous, voided["invoice_id"])
    assert refused.status_code == 409
    assert refused.json()["type"] == "invoice_not_payable"

    paid = new_invoice(client, firm)
    pay(anonymous, paid["invoice_id"])
    update = client.post(
        f"{API}/invoices", json=invoice_body(firm, external_id=paid["external_id"], amount="1")
    )
    assert update.status_code == 409
    assert update.json()["type"] == "invoice_not_updatable"
    assert pay(anonymous, paid["invoice_id"]).status_code == 409


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"card": card("4242 4242 4242 4241")}, "card.number"),
        ({"card": card(exp_year=2001)}, "card"),
        ({"card": card(exp_month=13)}, "card.exp_month"),
        ({"card": card(cvc="12")}, "card.cvc"),
        ({"card": card(fullwidth(SUCCESS_CARD))}, "card.number"),
        ({"card": card(cvc=fullwidth("123"))}, "card.cvc"),
        ({"card": card(exp_year=fullwidth("2099"))}, "card.exp_year"),
        ({"card": None}, "card"),
        ({"method": "Cheque"}, "method"),
        (
            {
                "method": "DirectDebit",
                "direct_debit": {"account_name": "F", "bsb": "1", "account_number": "123456"},
            },
            "direct_debit.bsb",
        ),
        ({"amount": "0"}, "amount"),
        ({"idempotency_key": ""}, "idempotency_key"),
    ],
)
def test_bad_payments_name_the_field(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm, fields: dict[str, Any], field: str
) -> None:
    invoice = new_invoice(client, firm)
    response = pay(anonymous, invoice["invoice_id"], **fields)
    assert response.status_code == 400, response.text
    assert field in [f["field"] for f in response.json()["error_context"]["fields"]]
    assert fetch(client, invoice["invoice_id"])["payments"] == []


def test_a_method_the_invoice_does_not_allow_is_refused(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm
) -> None:
    invoice = new_invoice(client, firm, payment_methods_override=["DirectDebit"])
    response = pay(anonymous, invoice["invoice_id"])
    assert response.status_code == 400
    assert response.json()["type"] == "method_not_allowed"


def test_unknown_invoice_cannot_be_paid(anonymous: httpx.Client) -> None:
    assert pay(anonymous, str(uuid.uuid4())).status_code == 404
    assert pay(anonymous, "not-an-id").status_code == 404


def surcharging_firm(database: Database, partner: Partner, percent: str) -> Firm:
    """A firm whose payers bear a card surcharge of ``percent``."""
    firm = create_firm(database, partner)
    with database.session() as session:
        row = session.get_one(FirmRow, firm.id)
        row.surcharge_enabled, row.surcharge_percent = True, percent
        session.commit()
    return firm


def test_surcharge_is_borne_by_the_payer_when_the_firm_says_so(
    client: httpx.Client, anonymous: httpx.Client, partner: Partner, database: Database
) -> None:
    firm = surcharging_firm(database, partner, "1.5")
    default = new_invoice(client, firm)
    charged = pay(anonymous, default["invoice_id"]).json()["payment"]
    # 1.5% of 123.45 is 1.85175: half-up to the cent is 1.85.
    assert (charged["amount"], charged["surcharge"], charged["total_charged"]) == (
        "123.45",
        "1.85",
        "125.30",
    )
    merchant = new_invoice(client, firm, surcharge_choice_override="Merchant")
    assert pay(anonymous, merchant["invoice_id"]).json()["payment"]["surcharge"] == "0.00"
    debit = new_invoice(client, firm)
    account = {"account_name": "F", "bsb": "062000", "account_number": "123456"}
    by_debit = pay(anonymous, debit["invoice_id"], method="DirectDebit", direct_debit=account)
    assert by_debit.json()["payment"]["surcharge"] == "0.00"


def test_external_payments_are_recorded_once(
    client: httpx.Client, firm: Firm, server: Server, database: Database
) -> None:
    invoice = new_invoice(client, firm)
    body = {
        "artifact_id": invoice["invoice_id"],
        "amount": "23.45",
        "external_id": "bank-transfer-1",
        "payment_type": "BankTransfer",
        "details": "ref 991",
    }
    first = client.post(f"{API}/payments/external", json=body)
    assert first.status_code == 200, first.text
    assert first.json()["invoice"]["amount_due"] == "100.00"
    again = client.post(f"{API}/payments/external", json=body)
    assert again.json()["payment"]["payment_id"] == first.json()["payment"]["payment_id"]
    (line,) = fetch(client, invoice["invoice_id"])["payments"]
    assert (line["payment_type"], line["external_id"]) == ("BankTransfer", "bank-transfer-1")

    stranger = create_partner(database)
    with httpx.Client(base_url=server.base_url, headers=stranger.headers) as other:
        assert other.post(f"{API}/payments/external", json=body).status_code == 404


def test_card_numbers_are_never_stored(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm, database: Database, server: Server
) -> None:
    invoice = new_invoice(client, firm)
    pay(anonymous, invoice["invoice_id"], card=card(DECLINED_CARD))
    pay(anonymous, invoice["invoice_id"], card=card(NO_FUNDS_CARD))
    pay(anonymous, invoice["invoice_id"])
    with database.session() as session:
        dumped = []
        for table in inspect(session.get_bind()).get_table_names():
            rows = session.execute(text(f'SELECT * FROM "{table}"')).all()
            dumped.extend(str(row) for row in rows)
    everything = "\n".join(dumped) + server.log.read_text()
    for number in ("4242424242424242", "4000000000000002", "4000000000009995", "4242 4242"):
        assert number not in everything
    assert "Visa •••• 4242" in everything


def test_a_closed_firms_invoice_shows_its_state_and_takes_no_payment(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm, database: Database
) -> None:
    invoice = new_invoice(client, firm)
    with database.unit_of_work() as session:
        set_firm_status(session, firm.id, FirmStatus.CLOSED)
    page = anonymous.get(f"/pay/{invoice['invoice_id']}")
    assert page.status_code == 200
    assert "Not available" in page.text
    assert "<form" not in page.text
    assert pay(anonymous, invoice["invoice_id"]).status_code == 409


# --- an invoice with nothing due is Paid, by whatever path --------------------------------


def events(client: httpx.Client, topic: str) -> list[dict[str, Any]]:
    """What this partner's events of ``topic`` carried, oldest first (the outbox holds
    them from the commit of their change, so no waiting for a delivery)."""
    response = client.get(f"{API}/events", params={"topic": topic})
    assert response.status_code == 200, response.text
    return [event["payload"]["event"] for event in response.json()["events"]]


def adjust(client: httpx.Client, invoice_id: str, new_amount: str) -> httpx.Response:
    return client.post(
        f"{API}/invoices/{invoice_id}/adjust-amount", json={"new_amount": new_amount}
    )


def test_adjusting_down_to_what_is_paid_makes_the_invoice_paid(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm
) -> None:
    invoice = new_invoice(client, firm, amount="100.00")
    assert pay(anonymous, invoice["invoice_id"], amount="60.00").status_code == 200
    response = adjust(client, invoice["invoice_id"], "60.00")
    assert response.status_code == 200, response.text
    adjusted = response.json()["invoice"]
    assert (adjusted["status"], adjusted["amount"], adjusted["amount_due"]) == (
        "Paid",
        "60.00",
        "0.00",
    )
    assert fetch(client, invoice["invoice_id"]) == adjusted
    assert events(client, "invoice.updated")[-1] == adjusted
    assert_problem(pay(anonymous, invoice["invoice_id"]), 409, "invoice_not_payable")


def test_raising_a_paid_invoice_is_refused(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm
) -> None:
    invoice = new_invoice(client, firm, amount="100.00")
    assert pay(anonymous, invoice["invoice_id"], amount="60.00").status_code == 200
    assert adjust(client, invoice["invoice_id"], "60.00").json()["invoice"]["status"] == "Paid"
    updates = len(events(client, "invoice.updated"))

    assert_problem(adjust(client, invoice["invoice_id"], "80.00"), 409, "invoice_not_updatable")
    after = fetch(client, invoice["invoice_id"])
    assert (after["status"], after["amount"], after["amount_due"]) == ("Paid", "60.00", "0.00")
    assert len(events(client, "invoice.updated")) == updates


def test_an_upsert_lowering_the_amount_to_what_is_paid_makes_the_invoice_paid(
    client: httpx.Client, firm: Firm
) -> None:
    body = invoice_body(firm, amount="100.00")
    invoice = create_invoice(client, body)
    external = {
        "artifact_id": invoice["invoice_id"],
        "amount": "60.00",
        "external_id": "cash-1",
        "payment_type": "Cash",
    }
    recorded = client.post(f"{API}/payments/external", json=external)
    assert recorded.status_code == 200, recorded.text
    assert recorded.json()["invoice"]["status"] == "Submitted"

    updated = create_invoice(client, body | {"amount": "60.00"})
    assert (updated["status"], updated["amount_due"]) == ("Paid", "0.00")
    assert events(client, "invoice.updated")[-1] == updated


def test_an_external_payment_of_what_is_due_pays_the_invoice(
    client: httpx.Client, firm: Firm
) -> None:
    invoice = new_invoice(client, firm, amount="100.00")
    body = {
        "artifact_id": invoice["invoice_id"],
        "amount": "100.00",
        "external_id": "transfer-1",
        "payment_type": "BankTransfer",
    }
    recorded = client.post(f"{API}/payments/external", json=body)
    assert recorded.status_code == 200, recorded.text
    assert (recorded.json()["invoice"]["status"], recorded.json()["invoice"]["amount_due"]) == (
        "Paid",
        "0.00",
    )
    assert events(client, "invoice.updated")[-1]["status"] == "Paid"


def test_an_authorised_invoice_adjusted_down_to_what_is_clearing_is_paid_once_settled(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm, server: Server, database_url: str
) -> None:
    invoice = new_invoice(client, firm, amount="100.00")
    account = {"account_name": "Frank", "bsb": "062-000", "account_number": "12345678"}
    debit = pay(
        anonymous,
        invoice["invoice_id"],
        method="DirectDebit",
        card=None,
        direct_debit=account,
        amount="60.00",
    )
    assert debit.status_code == 200, debit.text
    adjusted = adjust(client, invoice["invoice_id"], "60.00").json()["invoice"]
    assert (adjusted["status"], adjusted["amount_due"]) == ("Authorised", "0.00")
    assert_problem(pay(anonymous, invoice["invoice_id"]), 409, "invoice_not_payable")

    settle_payments(server, database_url)
    settled = fetch(client, invoice["invoice_id"])
    assert (settled["status"], settled["amount_due"]) == ("Paid", "0.00")
    assert events(client, "invoice.updated")[-1] == settled


# --- a surcharge on every charge ----------------------------------------------------------


def page_surcharge(anonymous: httpx.Client, invoice_id: str) -> tuple[str, str] | None:
    """The card surcharge and card total the payment page shows, if it shows one."""
    page = anonymous.get(f"/pay/{invoice_id}")
    assert page.status_code == 200
    shown = re.search(
        r'data-testid="surcharge">.*?<strong>(.*?)</strong>.*?data-testid="card-total">(.*?)<',
        page.text,
        re.DOTALL,
    )
    return (shown[1], shown[2]) if shown else None


def test_each_partial_card_payment_bears_at_least_a_cent_of_surcharge(
    client: httpx.Client, anonymous: httpx.Client, partner: Partner, database: Database
) -> None:
    firm = surcharging_firm(database, partner, "1.2345")
    invoice = new_invoice(client, firm, amount="1.00")
    # 1.2345% of 1.00 is 0.012345: half up to the cent, 0.01.
    assert page_surcharge(anonymous, invoice["invoice_id"]) == ("$0.01", "$1.01")
    for _ in range(3):
        # 1.2345% of 0.33 is 0.0041: below a cent, so a cent.
        charged = pay(anonymous, invoice["invoice_id"], amount="0.33").json()["payment"]
        assert (charged["amount"], charged["surcharge"], charged["total_charged"]) == (
            "0.33",
            "0.01",
            "0.34",
        )
    assert page_surcharge(anonymous, invoice["invoice_id"]) == ("$0.01", "$0.02")
    last = pay(anonymous, invoice["invoice_id"]).json()["payment"]
    assert (last["amount"], last["surcharge"]) == ("0.01", "0.01")
    assert fetch(client, invoice["invoice_id"])["status"] == "Paid"


def test_a_surcharge_of_zero_percent_charges_nothing(
    client: httpx.Client, anonymous: httpx.Client, partner: Partner, database: Database
) -> None:
    firm = surcharging_firm(database, partner, "0")
    invoice = new_invoice(client, firm, amount="0.33")
    assert page_surcharge(anonymous, invoice["invoice_id"]) is None
    charged = pay(anonymous, invoice["invoice_id"]).json()["payment"]
    assert (charged["surcharge"], charged["total_charged"]) == ("0.00", "0.33")


# --- an idempotency key names one request -------------------------------------------------


def test_an_idempotency_key_reused_with_another_amount_or_card_is_refused(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm
) -> None:
    invoice = new_invoice(client, firm, amount="100.00")
    first = pay(anonymous, invoice["invoice_id"], key="click-1", amount="10.00")
    assert first.status_code == 200, first.text
    for different in (
        {"amount": "20.00"},
        {"amount": "10.00", "card": card("5555 5555 5555 4444")},
        {"amount": "10.00", "card": card(exp_year="2098")},
        {"amount": None},
    ):
        reused = pay(anonymous, invoice["invoice_id"], key="click-1", **different)
        problem = assert_problem(reused, 409, "idempotency_key_reused", "idempotency_key")
        assert "click-1" in problem["detail"]
    # The same request, written another way, is a retry: the first answer again.
    same = pay(
        anonymous,
        invoice["invoice_id"],
        key="click-1",
        amount="10",
        card=card("4242-4242-4242-4242", exp_month="12", exp_year=2099, cvc="999"),
    )
    assert (same.status_code, same.json()) == (200, first.json())
    after = fetch(client, invoice["invoice_id"])
    assert (after["amount_due"], len(after["payments"])) == ("90.00", 1)


def test_a_retry_that_left_the_amount_to_the_amount_due_is_recognised_after_it_paid(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm
) -> None:
    invoice = new_invoice(client, firm, amount="100.00")
    assert pay(anonymous, invoice["invoice_id"], amount="40.00").status_code == 200
    rest = pay(anonymous, invoice["invoice_id"], key="rest-1")
    assert rest.json()["payment"]["amount"] == "60.00"
    assert fetch(client, invoice["invoice_id"])["status"] == "Paid"

    retried = pay(anonymous, invoice["invoice_id"], key="rest-1")
    assert (retried.status_code, retried.json()) == (200, rest.json())
    # Naming an amount is another request, even the amount the first one came to.
    explicit = pay(anonymous, invoice["invoice_id"], key="rest-1", amount="60.00")
    assert_problem(explicit, 409, "idempotency_key_reused", "idempotency_key")


def test_a_declined_attempts_key_is_not_taken_by_another_card(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm
) -> None:
    invoice = new_invoice(client, firm)
    declined = pay(anonymous, invoice["invoice_id"], key="try-1", card=card(DECLINED_CARD))
    assert declined.status_code == 402
    again = pay(anonymous, invoice["invoice_id"], key="try-1", card=card(DECLINED_CARD))
    assert (again.status_code, again.json()) == (402, declined.json())
    other_card = pay(anonymous, invoice["invoice_id"], key="try-1")
    assert_problem(other_card, 409, "idempotency_key_reused", "idempotency_key")
    assert fetch(client, invoice["invoice_id"])["payments"] == []


def test_an_external_id_reused_with_another_payment_is_refused(
    client: httpx.Client, firm: Firm
) -> None:
    invoice = new_invoice(client, firm, amount="100.00")
    body = {
        "artifact_id": invoice["invoice_id"],
        "amount": "10.00",
        "external_id": "transfer-7",
        "payment_type": "BankTransfer",
        "details": "ref 7",
    }
    first = client.post(f"{API}/payments/external", json=body)
    assert first.status_code == 200, first.text
    for different in ({"amount": "20.00"}, {"payment_type": "Cash"}, {"details": None}):
        reused = client.post(f"{API}/payments/external", json=body | different)
        problem = assert_problem(reused, 409, "idempotency_key_reused", "external_id")
        assert "transfer-7" in problem["detail"]
    retried = client.post(f"{API}/payments/external", json=body | {"amount": "10"})
    assert retried.status_code == 200, retried.text
    assert retried.json()["payment"] == first.json()["payment"]
    after = fetch(client, invoice["invoice_id"])
    assert (after["amount_due"], len(after["payments"])) == ("90.00", 1)


def test_request_fingerprints_keep_no_card_number(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm, database: Database
) -> None:
    invoice = new_invoice(client, firm)
    paid = pay(anonymous, invoice["invoice_id"]).json()["payment"]
    with database.session() as session:
        payment = session.get_one(Payment, uuid.UUID(paid["payment_id"]))
        stored, columns = payment.request_fingerprint, list(payment.__dict__.values())
    assert stored is not None
    assert re.fullmatch(r"[0-9a-f]{64}", stored)
    assert stored != hashlib.sha256(b"4242424242424242").hexdigest()
    assert not any("424242424242" in str(value) for value in columns)
