"""Refunds of payments through the Partner API, on the sandbox gateway: amounts and their
share of the surcharge, the invoice's `refunded`, events, the limit of what was paid under
concurrency, idempotency keys, and the payments that cannot be refunded. Refunds that the
processor finishes later (reconciliation, its notifications) are driven through the
service with a gateway that says what the test wants."""

from __future__ import annotations

import re
import threading
import uuid
from typing import Any

import httpx
import pytest

from partnerpay.config import Settings
from partnerpay.db import Database
from partnerpay.payments import refunds
from partnerpay.payments import service as payments
from partnerpay.payments.gateway import (
    ProcessorEvent,
    ProcessorEventKind,
    RefundOrder,
    RefundOutcome,
    RefundOutcomeStatus,
)
from partnerpay.payments.gateways.sandbox import SandboxGateway
from partnerpay.payments.models import Refund
from partnerpay.payments.schemas import RefundIn
from tests.receiver import Receiver
from tests.support import (
    API,
    Firm,
    Partner,
    Server,
    assert_problem,
    create_partner,
    fullwidth,
    partner_client,
)
from tests.test_payments import (
    events,
    fetch,
    new_invoice,
    pay,
    settle_payments,
    surcharging_firm,
)

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
REFUND_FIELDS = {
    "refund_id",
    "payment_id",
    "artifact_id",
    "created_at",
    "status",
    "refund_amount",
    "surcharge_amount",
}


def paid_invoice(
    client: httpx.Client,
    anonymous: httpx.Client,
    firm: Firm,
    amount: str = "123.45",
    paying: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A new invoice of ``amount`` and the card payment that paid it (in full, unless it
    pays only ``paying``)."""
    invoice = new_invoice(client, firm, amount=amount)
    response = pay(anonymous, invoice["invoice_id"], amount=paying)
    assert response.status_code == 200, response.text
    payment: dict[str, Any] = response.json()["payment"]
    assert payment["payment_status"] == "Successful"
    return invoice, payment


def refund(
    client: httpx.Client,
    payment_id: str,
    amount: str | None = None,
    key: str | None = None,
    **body: Any,
) -> httpx.Response:
    if amount is not None:
        body["refund_amount"] = amount
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post(f"{API}/payments/{payment_id}/refunds", json=body, headers=headers)


def refunded(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()["refund"]
    return made


def listed(client: httpx.Client, payment_id: str) -> list[dict[str, Any]]:
    response = client.get(f"{API}/payments/{payment_id}/refunds")
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"refunds"}
    found: list[dict[str, Any]] = response.json()["refunds"]
    return found


def subscribe(client: httpx.Client, url: str, topics: list[str]) -> None:
    response = client.post(
        f"{API}/webhooks", json={"name": "refunds", "url": url, "events": topics}
    )
    assert response.status_code == 200, response.text


def line_of(invoice: dict[str, Any]) -> dict[str, Any]:
    (line,) = invoice["payments"]
    return line


# --- amounts, surcharge, the invoice and events -------------------------------------------


def test_a_full_refund_returns_the_payment_and_all_its_surcharge(
    client: httpx.Client,
    anonymous: httpx.Client,
    partner: Partner,
    database: Database,
    receiver: Receiver,
) -> None:
    firm = surcharging_firm(database, partner, "1.5")
    invoice, payment = paid_invoice(client, anonymous, firm)
    assert payment["surcharge"] == "1.85"
    subscribe(client, receiver.url, ["payment.refunded", "invoice.updated"])
    before = fetch(client, invoice["invoice_id"])

    response = refund(
        client, payment["payment_id"], "123.45", refund_reason="Duplicate", firm_notes="Sorry"
    )
    made = refunded(response)
    assert response.headers.get("idempotent-replayed") is None
    assert response.json()["firm_id"] == str(firm.id)
    assert set(made) == REFUND_FIELDS | {"refund_reason", "firm_notes"}
    assert (made["status"], made["refund_amount"], made["surcharge_amount"]) == (
        "Complete",
        "123.45",
        "1.85",
    )
    assert (made["payment_id"], made["artifact_id"]) == (
        payment["payment_id"],
        invoice["invoice_id"],
    )
    assert (made["refund_reason"], made["firm_notes"]) == ("Duplicate", "Sorry")
    assert TIMESTAMP.fullmatch(made["created_at"])

    after = fetch(client, invoice["invoice_id"])
    # A refund gives money back; the invoice stays paid (docs/decisions.md).
    assert (after["status"], after["amount_due"]) == ("Paid", "0.00")
    assert line_of(after)["refunded"] == "123.45"
    assert line_of(after)["received"] == "123.45"
    assert {k: v for k, v in after.items() if k not in ("payments", "updated_at")} == {
        k: v for k, v in before.items() if k not in ("payments", "updated_at")
    }
    assert after["updated_at"] > before["updated_at"]

    received = receiver.wait_for(2)
    by_topic = {r.envelope["event_type"]: r.envelope["event"] for r in received}
    assert by_topic == {"payment.refunded": made, "invoice.updated": after}

    nothing_left = refund(client, payment["payment_id"], "0.01")
    problem = assert_problem(nothing_left, 400, "validation_error", "refund_amount")
    assert "is more than what can be refunded (0.00)" in problem["detail"]


def test_partial_refunds_share_the_surcharge_and_the_last_takes_what_is_left(
    client: httpx.Client, anonymous: httpx.Client, partner: Partner, database: Database
) -> None:
    firm = surcharging_firm(database, partner, "1.5")
    invoice, payment = paid_invoice(client, anonymous, firm)
    assert payment["surcharge"] == "1.85"
    # 1.85 x 41.15 / 123.45 is 0.61666...: half up, 0.62, twice; the third refund brings
    # the total to the whole payment and takes the 0.61 that is left, not another 0.62.
    shares = []
    for expected_refunded in ("41.15", "82.30"):
        made = refunded(refund(client, payment["payment_id"], "41.15"))
        shares.append(made["surcharge_amount"])
        assert line_of(fetch(client, invoice["invoice_id"]))["refunded"] == expected_refunded
    assert shares == ["0.62", "0.62"]

    too_much = refund(client, payment["payment_id"], "41.16")
    problem = assert_problem(too_much, 400, "validation_error", "refund_amount")
    assert "(41.15)" in problem["detail"]

    last = refunded(refund(client, payment["payment_id"], "41.15"))
    assert last["surcharge_amount"] == "0.61"
    found = listed(client, payment["payment_id"])
    assert sum(int(r["surcharge_amount"].replace(".", "")) for r in found) == 185
    after = fetch(client, invoice["invoice_id"])
    assert (after["status"], line_of(after)["refunded"]) == ("Paid", "123.45")


def test_a_refund_of_a_part_paid_invoice_leaves_what_is_due(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm
) -> None:
    invoice, payment = paid_invoice(client, anonymous, firm, paying="23.45")
    made = refunded(refund(client, payment["payment_id"], "10"))
    assert (made["refund_amount"], made["surcharge_amount"]) == ("10.00", "0.00")
    after = fetch(client, invoice["invoice_id"])
    assert (after["status"], after["amount_due"]) == ("Submitted", "100.00")
    assert (line_of(after)["received"], line_of(after)["refunded"]) == ("23.45", "10.00")
    over = refund(client, payment["payment_id"], "13.46")
    assert "(13.45)" in assert_problem(over, 400, "validation_error", "refund_amount")["detail"]


def test_refunds_are_listed_oldest_first(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm
) -> None:
    _invoice, payment = paid_invoice(client, anonymous, firm)
    assert listed(client, payment["payment_id"]) == []
    made = [refunded(refund(client, payment["payment_id"], amount)) for amount in ("1", "2", "3")]
    assert listed(client, payment["payment_id"]) == made
    assert [r["refund_amount"] for r in made] == ["1.00", "2.00", "3.00"]
    assert "refund_reason" not in made[0]  # fields with no value are left out


def test_the_refund_topic_is_listed_and_logged(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm
) -> None:
    topics = client.get(f"{API}/events/topics").json()["event_topics"]
    assert "payment.refunded" in topics
    _invoice, payment = paid_invoice(client, anonymous, firm)
    made = refunded(refund(client, payment["payment_id"], "5.00"))
    assert events(client, "payment.refunded") == [made]


# --- never more than was paid ---------------------------------------------------------------


def test_concurrent_refunds_never_exceed_the_payment(
    server: Server, client: httpx.Client, anonymous: httpx.Client, firm: Firm, partner: Partner
) -> None:
    invoice, payment = paid_invoice(client, anonymous, firm, amount="100.00")
    start = threading.Barrier(8)
    statuses: list[int] = []

    def attempt() -> None:
        with partner_client(server, partner) as own:
            start.wait()
            statuses.append(refund(own, payment["payment_id"], "30.00").status_code)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] * 3 + [400] * 5
    found = listed(client, payment["payment_id"])
    assert [r["refund_amount"] for r in found] == ["30.00"] * 3
    assert line_of(fetch(client, invoice["invoice_id"]))["refunded"] == "90.00"
    assert refunded(refund(client, payment["payment_id"], "10.00"))["refund_amount"] == "10.00"
    assert refund(client, payment["payment_id"], "0.01").status_code == 400


# --- idempotency keys -----------------------------------------------------------------------


def test_an_idempotency_key_refunds_once(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm
) -> None:
    _invoice, payment = paid_invoice(client, anonymous, firm)
    first = refund(client, payment["payment_id"], "10.00", key="refund-1", refund_reason="r")
    made = refunded(first)
    # The id is derived from the key, so a retry after a crash asks the processor the same.
    assert made["refund_id"] == str(uuid.uuid5(uuid.UUID(payment["payment_id"]), "refund-1"))

    for same in ("10.00", "10"):
        again = refund(client, payment["payment_id"], same, key="refund-1", refund_reason="r")
        assert (again.status_code, again.json()) == (201, first.json())
        assert again.headers["idempotent-replayed"] == "true"

    for different in (
        {"amount": "20.00", "refund_reason": "r"},
        {"amount": "10.00", "refund_reason": "other"},
        {"amount": "10.00"},
        {"amount": "10.00", "refund_reason": "r", "firm_notes": "n"},
    ):
        reused = refund(client, payment["payment_id"], key="refund-1", **different)
        problem = assert_problem(reused, 409, "idempotency_key_reused", "Idempotency-Key")
        assert "refund-1" in problem["detail"]
    assert [r["refund_id"] for r in listed(client, payment["payment_id"])] == [made["refund_id"]]

    # A key names a refund of one payment: another payment's refund may use it too.
    _other_invoice, other = paid_invoice(client, anonymous, firm)
    elsewhere = refunded(refund(client, other["payment_id"], "10.00", key="refund-1"))
    assert elsewhere["refund_id"] != made["refund_id"]


def test_a_replay_is_answered_even_once_nothing_is_left_to_refund(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm
) -> None:
    _invoice, payment = paid_invoice(client, anonymous, firm)
    first = refund(client, payment["payment_id"], "123.45", key="all")
    assert first.status_code == 201, first.text
    again = refund(client, payment["payment_id"], "123.45", key="all")
    assert (again.status_code, again.json()) == (201, first.json())
    assert len(listed(client, payment["payment_id"])) == 1


# --- payments that cannot be refunded, and payments that are not there ---------------------


def test_an_external_payment_cannot_be_refunded_through_the_gateway(
    client: httpx.Client, firm: Firm
) -> None:
    invoice = new_invoice(client, firm)
    body = {
        "artifact_id": invoice["invoice_id"],
        "amount": "23.45",
        "external_id": "cash-1",
        "payment_type": "Cash",
    }
    recorded = client.post(f"{API}/payments/external", json=body)
    assert recorded.status_code == 200, recorded.text
    payment_id = recorded.json()["payment"]["payment_id"]
    problem = assert_problem(refund(client, payment_id, "1.00"), 409, "payment_not_refundable")
    assert "outside partnerpay" in problem["detail"]
    assert listed(client, payment_id) == []


def test_a_direct_debit_is_refundable_once_it_has_cleared(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm, server: Server, database_url: str
) -> None:
    invoice = new_invoice(client, firm)
    account = {"account_name": "Frank", "bsb": "062-000", "account_number": "12345678"}
    debit = pay(
        anonymous, invoice["invoice_id"], method="DirectDebit", card=None, direct_debit=account
    )
    assert debit.json()["payment"]["payment_status"] == "Processing"
    payment_id = debit.json()["payment"]["payment_id"]
    problem = assert_problem(refund(client, payment_id, "1.00"), 409, "payment_not_refundable")
    assert "Processing" in problem["detail"]

    settle_payments(server, database_url)
    assert refunded(refund(client, payment_id, "1.00"))["status"] == "Complete"
    assert line_of(fetch(client, invoice["invoice_id"]))["refunded"] == "1.00"


def test_another_partners_payment_is_not_found(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm, server: Server, database: Database
) -> None:
    invoice, payment = paid_invoice(client, anonymous, firm)
    with partner_client(server, create_partner(database)) as stranger:
        for response in (
            refund(stranger, payment["payment_id"], "1.00"),
            stranger.get(f"{API}/payments/{payment['payment_id']}/refunds"),
        ):
            problem = assert_problem(response, 404, "not_found")
            assert invoice["invoice_id"] not in problem["detail"]
    for unknown in (str(uuid.uuid4()), "not-a-payment", invoice["invoice_id"]):
        assert_problem(refund(client, unknown, "1.00"), 404, "not_found")
        assert_problem(client.get(f"{API}/payments/{unknown}/refunds"), 404, "not_found")
    assert line_of(fetch(client, invoice["invoice_id"]))["refunded"] == "0.00"


@pytest.mark.parametrize(
    ("body", "headers", "field"),
    [
        ({}, {}, "refund_amount"),
        ({"refund_amount": "0"}, {}, "refund_amount"),
        ({"refund_amount": "0.00"}, {}, "refund_amount"),
        ({"refund_amount": "-1"}, {}, "refund_amount"),
        ({"refund_amount": 12.34}, {}, "refund_amount"),
        ({"refund_amount": "1.234"}, {}, "refund_amount"),
        ({"refund_amount": fullwidth("1")}, {}, "refund_amount"),
        ({"refund_amount": "1", "refund_reason": "r" * 501}, {}, "refund_reason"),
        ({"refund_amount": "1", "firm_notes": "n" * 2001}, {}, "firm_notes"),
        ({"refund_amount": "1", "refund_reason": 7}, {}, "refund_reason"),
        ({"refund_amount": "1", "amount": "1"}, {}, "amount"),
        ({"refund_amount": "1", "status": "Complete"}, {}, "status"),
        ({"refund_amount": "1"}, {"Idempotency-Key": "k" * 256}, "Idempotency-Key"),
        ({"refund_amount": "1"}, {"Idempotency-Key": ""}, "Idempotency-Key"),
    ],
)
def test_bad_refunds_name_the_field(
    client: httpx.Client,
    anonymous: httpx.Client,
    firm: Firm,
    body: dict[str, Any],
    headers: dict[str, str],
    field: str,
) -> None:
    invoice, payment = paid_invoice(client, anonymous, firm)
    response = client.post(
        f"{API}/payments/{payment['payment_id']}/refunds", json=body, headers=headers
    )
    assert_problem(response, 400, "validation_error", field)
    assert listed(client, payment["payment_id"]) == []
    assert line_of(fetch(client, invoice["invoice_id"]))["refunded"] == "0.00"


# --- refunds the processor finishes later ----------------------------------------------------


class LaterGateway(SandboxGateway):
    """The sandbox, but its refunds are pending until the test says how they came out
    (``outcomes``, by reference); unknown ones stay pending."""

    def __init__(self) -> None:
        self.outcomes: dict[str, RefundOutcomeStatus] = {}

    def refund(self, order: RefundOrder) -> RefundOutcome:
        return RefundOutcome(RefundOutcomeStatus.PENDING, f"later_{order.refund_id.hex}")

    def refund_outcome(self, reference: str, account: str | None) -> RefundOutcome:  # noqa: ARG002
        return RefundOutcome(self.outcomes.get(reference, RefundOutcomeStatus.PENDING), reference)


@pytest.fixture
def later() -> LaterGateway:
    return LaterGateway()


def pending_refund(
    database: Database, partner: Partner, payment_id: str, gateway: LaterGateway, amount: str
) -> Refund:
    with database.unit_of_work() as session:
        made = refunds.refund_payment(
            session,
            partner.id,
            payment_id,
            RefundIn(refund_amount=amount),
            None,
            gateway,
            "http://pay.test",
        )
        session.expunge(made.refund)
        return made.refund


def test_a_processing_refund_counts_until_reconciliation_says_how_it_ended(
    client: httpx.Client,
    anonymous: httpx.Client,
    firm: Firm,
    partner: Partner,
    database: Database,
    later: LaterGateway,
) -> None:
    invoice, payment = paid_invoice(client, anonymous, firm, amount="100.00")
    done = pending_refund(database, partner, payment["payment_id"], later, "30.00")
    lost = pending_refund(database, partner, payment["payment_id"], later, "50.00")
    assert [r["status"] for r in listed(client, payment["payment_id"])] == ["Processing"] * 2
    assert line_of(fetch(client, invoice["invoice_id"]))["refunded"] == "80.00"
    over = refund(client, payment["payment_id"], "20.01")
    assert_problem(over, 400, "validation_error", "refund_amount")
    updates = len(events(client, "invoice.updated"))

    assert done.processor_reference
    assert lost.processor_reference
    later.outcomes = {
        done.processor_reference: RefundOutcomeStatus.SUCCEEDED,
        lost.processor_reference: RefundOutcomeStatus.FAILED,
    }
    changed, asked = payments.reconcile_all(database, later, Settings(database_url="sqlite://"))
    assert changed >= 2
    assert asked >= 2
    statuses = {r["refund_id"]: r["status"] for r in listed(client, payment["payment_id"])}
    assert statuses == {str(done.id): "Complete", str(lost.id): "Failed"}
    # The failed refund gives its part back: it no longer counts as refunded, and it may
    # be refunded again.
    after = fetch(client, invoice["invoice_id"])
    assert (after["status"], line_of(after)["refunded"]) == ("Paid", "30.00")
    assert len(events(client, "invoice.updated")) == updates + 1
    reported = [(e["refund_id"], e["status"]) for e in events(client, "payment.refunded")]
    assert reported[-2:] in (
        [(str(done.id), "Complete"), (str(lost.id), "Failed")],
        [(str(lost.id), "Failed"), (str(done.id), "Complete")],
    )
    assert refunded(refund(client, payment["payment_id"], "70.00"))["status"] == "Complete"

    # Asked again, nothing is left to reconcile and nothing changes.
    with database.unit_of_work() as session:
        assert not refunds.reconcile_refund(session, done.id, later, "http://pay.test")


def test_the_processors_notification_of_a_refund_is_applied_once(
    client: httpx.Client,
    anonymous: httpx.Client,
    firm: Firm,
    partner: Partner,
    database: Database,
    later: LaterGateway,
) -> None:
    invoice, payment = paid_invoice(client, anonymous, firm, amount="100.00")
    made = pending_refund(database, partner, payment["payment_id"], later, "40.00")
    event = ProcessorEvent(
        f"evt_{uuid.uuid4().hex}",
        ProcessorEventKind.REFUND,
        made.processor_reference,
        refund_outcome=RefundOutcome(RefundOutcomeStatus.SUCCEEDED, made.processor_reference),
    )
    seen = len(events(client, "payment.refunded"))
    with database.unit_of_work() as session:
        assert payments.handle_processor_event(session, later, event, "http://pay.test")
    with database.unit_of_work() as session:
        assert not payments.handle_processor_event(session, later, event, "http://pay.test")
    assert [r["status"] for r in listed(client, payment["payment_id"])] == ["Complete"]
    assert len(events(client, "payment.refunded")) == seen + 1
    assert line_of(fetch(client, invoice["invoice_id"]))["refunded"] == "40.00"

    # A notification naming the refund only by the id we gave it finds it too.
    other = pending_refund(database, partner, payment["payment_id"], later, "10.00")
    by_metadata = ProcessorEvent(
        f"evt_{uuid.uuid4().hex}",
        ProcessorEventKind.REFUND,
        "re_unknown",
        refund_outcome=RefundOutcome(RefundOutcomeStatus.FAILED, "re_unknown"),
        metadata={"partnerpay_refund_id": str(other.id)},
    )
    with database.unit_of_work() as session:
        assert payments.handle_processor_event(session, later, by_metadata, "http://pay.test")
    assert [r["status"] for r in listed(client, payment["payment_id"])] == [
        "Complete",
        "Failed",
    ]
    assert line_of(fetch(client, invoice["invoice_id"]))["refunded"] == "40.00"
