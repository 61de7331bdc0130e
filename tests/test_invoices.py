"""The invoice endpoints of the Partner API, over HTTP, against a running server."""

import base64
import itertools
import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select

from partnerpay.artifacts.models import Debtor, Matter
from partnerpay.db import Database
from partnerpay.events.models import Topic, WebhookEvent
from partnerpay.invoices import service
from partnerpay.invoices.models import Invoice
from partnerpay.invoices.schemas import InvoiceIn
from tests.support import (
    API,
    Firm,
    Partner,
    Server,
    arabic_indic,
    assert_problem,
    create_firm,
    create_invoice,
    create_partner,
    fullwidth,
    invoice_body,
    invoice_by_external_id,
    list_all,
    list_pages,
    partner_client,
)

INVOICES = f"{API}/invoices"
ALWAYS_PRESENT = {
    "invoice_id",
    "firm_id",
    "external_id",
    "amount",
    "amount_due",
    "currency",
    "status",
    "payment_uri",
    "settlement_account",
    "settlement_account_id",
    "surcharge_choice_override",
    "payments",
    "created_at",
    "updated_at",
}
OPTIONAL_FIELDS = {
    "due_date",
    "description",
    "external_reference",
    "matter",
    "debtor",
    "line_items",
    "notes",
    "payment_methods_override",
    "payment_redirect_url",
}


@pytest.fixture
def stranger(server: Server, database: Database) -> Iterator[httpx.Client]:
    """A client of another partner."""
    with partner_client(server, create_partner(database)) as http:
        yield http


def minimal_body(firm: Firm, **overrides: Any) -> dict[str, Any]:
    """Only the required fields, with a fresh external id."""
    body = {"firm_id": str(firm.id), "external_id": f"inv-{uuid.uuid4()}", "amount": "10"}
    return {**body, **overrides}


def accounts_of(client: httpx.Client, firm_id: object) -> dict[str, str]:
    """``{"Office": account_id, "Trust": account_id}`` of one of the partner's firms."""
    response = client.get(f"{API}/firms/{firm_id}")
    assert response.status_code == 200, response.text
    firm = response.json()["firm"]
    return {
        kind: firm[f"{kind.lower()}_account"]["account_id"]
        for kind in ("Office", "Trust")
        if f"{kind.lower()}_account" in firm
    }


def without(mapping: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: value for key, value in mapping.items() if key not in keys}


def read(client: httpx.Client, invoice_id: str) -> dict[str, Any]:
    response = client.get(f"{INVOICES}/{invoice_id}")
    assert response.status_code == 200, response.text
    invoice: dict[str, Any] = response.json()["invoice"]
    return invoice


def assert_not_stored(client: httpx.Client, body: dict[str, Any]) -> None:
    """No invoice exists under this body's firm and external id."""
    response = invoice_by_external_id(client, body["firm_id"], body["external_id"])
    assert_problem(response, 404, "not_found")


def assert_rejected(
    client: httpx.Client, body: dict[str, Any], status: int, type_: str, field: str | None = None
) -> dict[str, Any]:
    """POSTing ``body`` is refused with this problem, and writes nothing."""
    problem = assert_problem(client.post(INVOICES, json=body), status, type_, field)
    assert_not_stored(client, body)
    return problem


# --- create --------------------------------------------------------------------------------


def test_create_answers_the_submitted_invoice(
    client: httpx.Client, server: Server, firm: Firm
) -> None:
    body = invoice_body(firm)
    response = client.post(INVOICES, json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    invoice = response.json()["invoice"]

    assert invoice["status"] == "Submitted"
    assert invoice["amount"] == "123.45"
    assert invoice["amount_due"] == invoice["amount"]
    assert invoice["payment_uri"] == f"{server.base_url}/pay/{invoice['invoice_id']}"
    assert invoice["payments"] == []
    assert invoice["surcharge_choice_override"] == "Default"
    assert invoice["settlement_account_id"] == accounts_of(client, firm.id)["Office"]
    assert invoice["created_at"] == invoice["updated_at"]
    for field, value in body.items():
        assert invoice[field] == value, field

    assert read(client, invoice["invoice_id"]) == invoice
    by_external_id = invoice_by_external_id(client, firm.id, body["external_id"])
    assert by_external_id.json() == {"invoice": invoice}


@pytest.mark.parametrize(
    ("amount", "amount_due"),
    [("100", "100.00"), ("0.5", "0.50"), ("0.01", "0.01"), ("9999999999.99", "9999999999.99")],
)
def test_amounts_are_echoed_as_sent(
    client: httpx.Client, firm: Firm, amount: str, amount_due: str
) -> None:
    body = minimal_body(firm, amount=amount, line_items=[{"amount": amount, "tax_rate": "0"}])
    invoice = create_invoice(client, body)
    assert invoice["amount"] == amount
    assert invoice["amount_due"] == amount_due
    assert invoice["line_items"] == [{"amount": amount, "quantity": 1, "tax_rate": "0"}]
    assert read(client, invoice["invoice_id"])["amount"] == amount


@pytest.mark.parametrize(
    "due_date",
    [
        "1953-07-23T13:56:24.084Z",
        "0001-01-01T00:00:00.000Z",
        "2024-02-29T23:59:59.999Z",
        "9999-12-31T23:59:59.999Z",
    ],
)
def test_due_date_round_trips_byte_for_byte(
    client: httpx.Client, firm: Firm, due_date: str
) -> None:
    invoice = create_invoice(client, minimal_body(firm, due_date=due_date))
    assert invoice["due_date"] == due_date
    assert read(client, invoice["invoice_id"])["due_date"] == due_date


def test_due_date_with_an_offset_is_shown_in_utc(client: httpx.Client, firm: Firm) -> None:
    invoice = create_invoice(client, minimal_body(firm, due_date="2024-01-01T10:00:00.5+10:00"))
    assert invoice["due_date"] == "2024-01-01T00:00:00.500Z"


@pytest.mark.parametrize(
    "due_date",
    [
        "2024-01-01T00:00:00",
        "2024-13-01T00:00:00Z",
        "tomorrow",
        "0001-01-01T00:00:00+01:00",
        0,
        "1700000000",
        fullwidth("2024-01-01T00:00:00Z"),
    ],
)
def test_bad_due_date_is_400(client: httpx.Client, firm: Firm, due_date: object) -> None:
    problem = assert_rejected(
        client, minimal_body(firm, due_date=due_date), 400, "validation_error", "due_date"
    )
    if isinstance(due_date, str) and not due_date.isascii():
        assert "RFC 3339" in problem["detail"]


def test_fields_with_no_value_are_omitted(client: httpx.Client, firm: Firm) -> None:
    body = minimal_body(firm, debtor={"external_id": "client-1"}, matter={"external_id": "m-1"})
    invoice = create_invoice(client, body)
    assert set(invoice) >= ALWAYS_PRESENT | {"debtor", "matter"}
    for absent in OPTIONAL_FIELDS - {"debtor", "matter"}:
        assert absent not in invoice, absent
    assert None not in invoice.values()
    assert invoice["debtor"] == {"external_id": "client-1"}
    assert invoice["matter"] == {"external_id": "m-1"}
    assert invoice["currency"] == "AUD"
    assert invoice["settlement_account"] == "Office"
    listed = list_all(client, "/invoices", "invoices", firm_id=str(firm.id))
    assert listed == [invoice]


def test_external_id_may_contain_slashes(client: httpx.Client, firm: Firm) -> None:
    invoice = create_invoice(client, minimal_body(firm, external_id="2024/06/inv 7"))
    found = invoice_by_external_id(client, firm.id, "2024%2F06/inv%207")
    assert found.status_code == 200, found.text
    assert found.json()["invoice"] == invoice


# --- upsert --------------------------------------------------------------------------------


def test_the_same_post_twice_changes_nothing(client: httpx.Client, firm: Firm) -> None:
    body = invoice_body(firm)
    first = create_invoice(client, body)
    second = create_invoice(client, body)
    assert second == first
    assert read(client, first["invoice_id"]) == first


def test_a_changed_post_updates_the_same_invoice(client: httpx.Client, firm: Firm) -> None:
    body = invoice_body(firm)
    first = create_invoice(client, body)
    second = create_invoice(client, {**body, "amount": "200"})

    assert second["invoice_id"] == first["invoice_id"]
    assert second["amount"] == "200"
    assert second["amount_due"] == "200.00"
    assert second["created_at"] == first["created_at"]
    assert second["updated_at"] >= first["updated_at"]
    changed = ("amount", "amount_due", "updated_at")
    assert without(second, *changed) == without(first, *changed)
    assert read(client, first["invoice_id"]) == second
    assert list_all(client, "/invoices", "invoices", firm_id=str(firm.id)) == [second]


def test_an_amount_written_differently_is_a_change(client: httpx.Client, firm: Firm) -> None:
    body = minimal_body(firm, amount="100")
    first = create_invoice(client, body)
    second = create_invoice(client, {**body, "amount": "100.00"})
    assert second["invoice_id"] == first["invoice_id"]
    assert second["amount"] == "100.00"
    assert second["amount_due"] == first["amount_due"] == "100.00"


def test_upsert_replaces_the_whole_content(client: httpx.Client, firm: Firm) -> None:
    body = invoice_body(firm)
    first = create_invoice(client, body)
    dropped = ("notes", "line_items", "debtor", "due_date", "payment_methods_override")
    second = create_invoice(client, {**without(body, *dropped), "settlement_account": "Trust"})

    assert second["invoice_id"] == first["invoice_id"]
    for field in dropped:
        assert field not in second, field
    assert second["settlement_account"] == "Trust"
    assert second["settlement_account_id"] == accounts_of(client, firm.id)["Trust"]
    assert second["matter"] == body["matter"]
    assert read(client, first["invoice_id"]) == second


def test_concurrent_first_posts_make_one_invoice(
    server: Server, partner: Partner, client: httpx.Client, firm: Firm
) -> None:
    reference = f"ref-{uuid.uuid4()}"
    body = invoice_body(firm, external_reference=reference)
    attempts = 20
    barrier = threading.Barrier(attempts)

    def post() -> httpx.Response:
        with partner_client(server, partner) as http:
            barrier.wait(timeout=30)
            return http.post(INVOICES, json=body)

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        responses = list(pool.map(lambda _: post(), range(attempts)))

    assert [r.status_code for r in responses] == [200] * attempts, [r.text for r in responses]
    invoices = [r.json()["invoice"] for r in responses]
    assert len({invoice["invoice_id"] for invoice in invoices}) == 1
    assert all(invoice == invoices[0] for invoice in invoices)
    listed = list_all(client, "/invoices", "invoices", external_reference=reference)
    assert [invoice["invoice_id"] for invoice in listed] == [invoices[0]["invoice_id"]]


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("invoice_id", str(uuid.uuid4())),
        ("status", "Paid"),
        ("payment_uri", "https://example.com/pay/1"),
        ("amount_due", "0.00"),
        ("payments", []),
        ("created_at", "2024-01-01T00:00:00.000Z"),
        ("updated_at", "2024-01-01T00:00:00.000Z"),
    ],
)
def test_platform_set_fields_are_rejected(
    client: httpx.Client, firm: Firm, field: str, value: object
) -> None:
    problem = assert_rejected(
        client, invoice_body(firm, **{field: value}), 400, "validation_error", field
    )
    assert problem["error_context"]["fields"] == [
        {"field": field, "message": "is set by the platform and must not be sent"}
    ]


def test_unknown_field_is_rejected(client: httpx.Client, firm: Firm) -> None:
    body = invoice_body(firm, ammount="1")
    assert_rejected(client, body, 400, "validation_error", "ammount")


@pytest.mark.parametrize("field", ["firm_id", "external_id", "amount"])
def test_missing_required_field_is_400(client: httpx.Client, firm: Firm, field: str) -> None:
    body = invoice_body(firm)
    del body[field]
    response = client.post(INVOICES, json=body)
    problem = assert_problem(response, 400, "validation_error", field)
    assert {"field": field, "message": "is required"} in problem["error_context"]["fields"]
    assert list_all(client, "/invoices", "invoices", firm_id=str(firm.id)) == []


def test_malformed_json_is_400(client: httpx.Client, firm: Firm) -> None:
    body = invoice_body(firm)
    truncated = json.dumps(body)[:-2]
    response = client.post(
        INVOICES, content=truncated, headers={"content-type": "application/json"}
    )
    assert_problem(response, 400, "malformed_json")
    assert_not_stored(client, body)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_non_json_content_type_is_415(client: httpx.Client, firm: Firm, content_type: str) -> None:
    body = invoice_body(firm)
    response = client.post(
        INVOICES, content=json.dumps(body), headers={"content-type": content_type}
    )
    assert_problem(response, 415, "unsupported_media_type")
    assert_not_stored(client, body)


def test_a_body_without_content_type_is_415(client: httpx.Client, firm: Firm) -> None:
    body = invoice_body(firm)
    response = client.post(INVOICES, content=json.dumps(body).encode())
    assert "content-type" not in response.request.headers
    assert_problem(response, 415, "unsupported_media_type")
    assert_not_stored(client, body)


def test_no_body_at_all_is_400_naming_the_body(client: httpx.Client) -> None:
    response = client.post(INVOICES)
    assert "content-type" not in response.request.headers
    problem = assert_problem(response, 400, "validation_error", "body")
    assert {"field": "body", "message": "is required"} in problem["error_context"]["fields"]


def test_json_with_charset_is_accepted(client: httpx.Client, firm: Firm) -> None:
    body = minimal_body(firm)
    response = client.post(
        INVOICES,
        content=json.dumps(body),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("body", ["[]", '"invoice"', "null", "42"])
def test_a_body_that_is_not_an_object_is_400(client: httpx.Client, body: str) -> None:
    response = client.post(INVOICES, content=body, headers={"content-type": "application/json"})
    assert_problem(response, 400, "validation_error")


BAD_AMOUNTS = [
    "12.345",
    "-1",
    "1e3",
    "abc",
    "0",
    "0.00",
    "",
    " 1",
    "1,000",
    "12345678901",
    fullwidth("123"),
    arabic_indic("123.45"),
    "12" + arabic_indic("3"),
    12.5,
    10,
    None,
]


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
def test_bad_amount_is_400(client: httpx.Client, firm: Firm, amount: object) -> None:
    assert_rejected(client, invoice_body(firm, amount=amount), 400, "validation_error", "amount")


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
def test_bad_line_item_amount_is_400(client: httpx.Client, firm: Firm, amount: object) -> None:
    body = invoice_body(firm)
    body["line_items"][1]["amount"] = amount
    problem = assert_rejected(client, body, 400, "validation_error", "line_items[1].amount")
    assert [f["field"] for f in problem["error_context"]["fields"]] == ["line_items[1].amount"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tax_rate": "101"}, "line_items[0].tax_rate"),
        ({"tax_rate": "-1"}, "line_items[0].tax_rate"),
        ({"tax_rate": 10}, "line_items[0].tax_rate"),
        ({"tax_rate": fullwidth("1") + arabic_indic("0")}, "line_items[0].tax_rate"),
        ({"tax_rate": fullwidth("10.5")}, "line_items[0].tax_rate"),
        ({"quantity": 0}, "line_items[0].quantity"),
        ({"quantity": "1"}, "line_items[0].quantity"),
        ({"quantity": 1.5}, "line_items[0].quantity"),
        ({"quantity": -1}, "line_items[0].quantity"),
        ({"unit_price": "1"}, "line_items[0].unit_price"),
    ],
)
def test_bad_line_item_is_400(
    client: httpx.Client, firm: Firm, change: dict[str, Any], field: str
) -> None:
    body = invoice_body(firm)
    body["line_items"][0].update(change)
    assert_rejected(client, body, 400, "validation_error", field)


def test_line_item_tax_rate_of_100_is_accepted(client: httpx.Client, firm: Firm) -> None:
    body = minimal_body(firm, line_items=[{"amount": "1", "tax_rate": "100", "quantity": 3}])
    assert create_invoice(client, body)["line_items"] == body["line_items"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"currency": "EUR"}, "currency"),
        ({"currency": "aud"}, "currency"),
        ({"settlement_account": "Savings"}, "settlement_account"),
        ({"surcharge_choice_override": "Sometimes"}, "surcharge_choice_override"),
        ({"payment_methods_override": ["Cash"]}, "payment_methods_override[0]"),
        ({"payment_redirect_url": "javascript:alert(1)"}, "payment_redirect_url"),
        ({"firm_id": "not-a-uuid"}, "firm_id"),
        ({"external_id": ""}, "external_id"),
        ({"debtor": {"name": "Frank"}}, "debtor.external_id"),
        ({"debtor": {"external_id": "d", "email": "not-an-email"}}, "debtor.email"),
        ({"matter": {"external_id": "m", "judge": "Dredd"}}, "matter.judge"),
        ({"notes": "one note"}, "notes"),
    ],
)
def test_bad_field_is_400_naming_it(
    client: httpx.Client, firm: Firm, change: dict[str, Any], field: str
) -> None:
    assert_rejected(client, invoice_body(firm, **change), 400, "validation_error", field)


def test_settlement_account_and_its_id_together_are_400(client: httpx.Client, firm: Firm) -> None:
    office = accounts_of(client, firm.id)["Office"]
    body = invoice_body(firm, settlement_account="Office", settlement_account_id=office)
    problem = assert_rejected(client, body, 400, "validation_error")
    assert "settlement_account_id" in problem["detail"]


@pytest.mark.parametrize("kind", ["Office", "Trust"])
def test_settlement_account_type_is_an_alias(client: httpx.Client, firm: Firm, kind: str) -> None:
    body = invoice_body(firm)
    del body["settlement_account"]
    invoice = create_invoice(client, {**body, "settlement_account_type": kind})
    assert invoice["settlement_account"] == kind
    assert invoice["settlement_account_id"] == accounts_of(client, firm.id)[kind]


def test_settlement_account_id_names_the_account(client: httpx.Client, firm: Firm) -> None:
    trust = accounts_of(client, firm.id)["Trust"]
    body = invoice_body(firm)
    del body["settlement_account"]
    invoice = create_invoice(client, {**body, "settlement_account_id": trust})
    assert invoice["settlement_account"] == "Trust"
    assert invoice["settlement_account_id"] == trust


# --- the state of the world ----------------------------------------------------------------


def test_pending_firm_is_409(client: httpx.Client, pending_firm: Firm) -> None:
    assert_rejected(client, invoice_body(pending_firm), 409, "firm_not_active")


def test_unknown_firm_is_404(client: httpx.Client, firm: Firm) -> None:
    body = invoice_body(firm, firm_id=str(uuid.uuid4()))
    assert_problem(client.post(INVOICES, json=body), 404, "not_found")
    assert list_all(client, "/invoices", "invoices") == []


def test_another_partners_firm_is_404(
    client: httpx.Client, stranger: httpx.Client, firm: Firm
) -> None:
    body = invoice_body(firm)
    response = stranger.post(INVOICES, json=body)
    problem = assert_problem(response, 404, "not_found")
    assert problem["error_context"]["fields"] == []
    assert_not_stored(client, body)


def test_trust_for_a_firm_without_one_is_409(
    client: httpx.Client, database: Database, partner: Partner
) -> None:
    office_only = create_firm(database, partner)
    body = invoice_body(office_only, settlement_account="Trust")
    assert_rejected(client, body, 409, "invalid_settlement_account")


@pytest.mark.parametrize("whose", ["another firm's", "unknown"])
def test_settlement_account_id_not_of_the_firm_is_409(
    client: httpx.Client, database: Database, partner: Partner, firm: Firm, whose: str
) -> None:
    other_firm = create_firm(database, partner, trust_account=True)
    account_id = (
        accounts_of(client, other_firm.id)["Office"] if whose != "unknown" else str(uuid.uuid4())
    )
    body = invoice_body(firm, settlement_account_id=account_id)
    del body["settlement_account"]
    assert_rejected(client, body, 409, "invalid_settlement_account")


# --- reading -------------------------------------------------------------------------------


def test_another_partners_invoice_is_404(
    client: httpx.Client, stranger: httpx.Client, firm: Firm
) -> None:
    invoice = create_invoice(client, invoice_body(firm))
    invoice_id = invoice["invoice_id"]

    for response in (
        stranger.get(f"{INVOICES}/{invoice_id}"),
        invoice_by_external_id(stranger, firm.id, invoice["external_id"]),
        stranger.post(f"{INVOICES}/{invoice_id}/adjust-amount", json={"new_amount": "1"}),
        stranger.post(f"{INVOICES}/{invoice_id}/void"),
    ):
        assert_problem(response, 404, "not_found")
        assert invoice["external_id"] not in response.text
        assert invoice["amount"] not in response.text
    assert read(client, invoice_id) == invoice
    assert list_all(stranger, "/invoices", "invoices") == []


@pytest.mark.parametrize("invoice_id", ["not-a-uuid", "123", str(uuid.uuid4())])
def test_malformed_or_unknown_invoice_id_is_404(client: httpx.Client, invoice_id: str) -> None:
    assert_problem(client.get(f"{INVOICES}/{invoice_id}"), 404, "not_found")
    assert_problem(client.post(f"{INVOICES}/{invoice_id}/void"), 404, "not_found")
    adjust = client.post(f"{INVOICES}/{invoice_id}/adjust-amount", json={"new_amount": "1"})
    assert_problem(adjust, 404, "not_found")


def test_an_id_spelled_in_other_digits_names_nothing(client: httpx.Client, firm: Firm) -> None:
    """``uuid.UUID`` reads a fullwidth "1" as "1": such an id must not find the invoice."""
    invoice = create_invoice(client, invoice_body(firm))
    invoice_id = fullwidth(invoice["invoice_id"])
    assert_problem(client.get(f"{INVOICES}/{invoice_id}"), 404, "not_found")
    firm_id = fullwidth(str(firm.id))
    by_external_id = invoice_by_external_id(client, firm_id, invoice["external_id"])
    assert_problem(by_external_id, 404, "not_found")
    assert read(client, invoice["invoice_id"]) == invoice


@pytest.mark.parametrize("firm_id", ["not-a-uuid", str(uuid.uuid4())])
def test_by_external_id_with_malformed_or_unknown_firm_is_404(
    client: httpx.Client, firm_id: str
) -> None:
    assert_problem(invoice_by_external_id(client, firm_id, "inv-1"), 404, "not_found")


# --- adjust and void -----------------------------------------------------------------------


def test_adjust_amount_changes_amount_and_amount_due(client: httpx.Client, firm: Firm) -> None:
    invoice = create_invoice(client, invoice_body(firm))
    response = client.post(
        f"{INVOICES}/{invoice['invoice_id']}/adjust-amount", json={"new_amount": "150"}
    )
    assert response.status_code == 200, response.text
    adjusted = response.json()["invoice"]
    assert adjusted["amount"] == "150"
    assert adjusted["amount_due"] == "150.00"
    assert adjusted["status"] == "Submitted"
    assert adjusted["created_at"] == invoice["created_at"]
    assert adjusted["updated_at"] >= invoice["updated_at"]
    assert read(client, invoice["invoice_id"]) == adjusted


def test_adjusting_to_the_same_amount_changes_nothing(client: httpx.Client, firm: Firm) -> None:
    invoice = create_invoice(client, invoice_body(firm))
    response = client.post(
        f"{INVOICES}/{invoice['invoice_id']}/adjust-amount", json={"new_amount": invoice["amount"]}
    )
    assert response.status_code == 200, response.text
    assert response.json()["invoice"] == invoice


@pytest.mark.parametrize(
    ("body", "field"),
    [
        *(({"new_amount": amount}, "new_amount") for amount in BAD_AMOUNTS),
        ({}, "new_amount"),
        ({"new_amount": "1", "amount": "1"}, "amount"),
    ],
)
def test_bad_new_amount_is_400(
    client: httpx.Client, firm: Firm, body: dict[str, Any], field: str
) -> None:
    invoice = create_invoice(client, invoice_body(firm))
    response = client.post(f"{INVOICES}/{invoice['invoice_id']}/adjust-amount", json=body)
    assert_problem(response, 400, "validation_error", field)
    assert read(client, invoice["invoice_id"]) == invoice


def test_void_then_no_more_changes(client: httpx.Client, firm: Firm) -> None:
    body = invoice_body(firm)
    invoice = create_invoice(client, body)
    invoice_id = invoice["invoice_id"]

    voided = client.post(f"{INVOICES}/{invoice_id}/void")
    assert voided.status_code == 200, voided.text
    voided_invoice = voided.json()["invoice"]
    assert voided_invoice["status"] == "Voided"
    assert voided_invoice["amount"] == invoice["amount"]
    assert voided_invoice["updated_at"] >= invoice["updated_at"]

    upsert = client.post(INVOICES, json={**body, "amount": "1"})
    assert_problem(upsert, 409, "invoice_not_updatable")
    adjust = client.post(f"{INVOICES}/{invoice_id}/adjust-amount", json={"new_amount": "1"})
    assert_problem(adjust, 409, "invoice_not_updatable")

    again = client.post(f"{INVOICES}/{invoice_id}/void")
    assert again.status_code == 200, again.text
    assert again.json()["invoice"] == voided_invoice
    assert read(client, invoice_id) == voided_invoice


# --- lists ---------------------------------------------------------------------------------


def test_list_is_newest_first_and_filters(
    client: httpx.Client, database: Database, partner: Partner, firm: Firm
) -> None:
    other_firm = create_firm(database, partner)
    reference = f"ref-{uuid.uuid4()}"
    created = [
        create_invoice(client, invoice_body(firm, external_reference=reference)),
        create_invoice(client, minimal_body(other_firm)),
        create_invoice(client, invoice_body(firm)),
        create_invoice(client, invoice_body(firm, external_reference=reference)),
    ]
    voided = client.post(f"{INVOICES}/{created[2]['invoice_id']}/void")
    assert voided.status_code == 200, voided.text
    created[2] = voided.json()["invoice"]

    def ids(**params: Any) -> list[str]:
        return [i["invoice_id"] for i in list_all(client, "/invoices", "invoices", **params)]

    everything = list_all(client, "/invoices", "invoices")
    assert sorted(i["invoice_id"] for i in everything) == sorted(i["invoice_id"] for i in created)
    stamps = [invoice["created_at"] for invoice in everything]
    assert stamps == sorted(stamps, reverse=True)
    position = {invoice["invoice_id"]: index for index, invoice in enumerate(everything)}
    for older, newer in itertools.pairwise(created):
        if newer["created_at"] > older["created_at"]:
            assert position[newer["invoice_id"]] < position[older["invoice_id"]]

    in_firm = {created[i]["invoice_id"] for i in (0, 2, 3)}
    assert set(ids(firm_id=str(firm.id))) == in_firm
    assert ids(firm_id=str(other_firm.id)) == [created[1]["invoice_id"]]
    assert ids(status="Voided") == [created[2]["invoice_id"]]
    assert set(ids(status="Submitted")) == {created[i]["invoice_id"] for i in (0, 1, 3)}
    assert set(ids(external_reference=reference)) == {created[i]["invoice_id"] for i in (0, 3)}
    assert ids(external_reference=reference, status="Voided") == []
    assert ids(firm_id=str(uuid.uuid4())) == []


def test_list_pages_have_no_duplicates_and_no_gaps(client: httpx.Client, firm: Firm) -> None:
    created = {create_invoice(client, minimal_body(firm))["invoice_id"] for _ in range(7)}

    pages = list_pages(client, "/invoices", "invoices", limit=3)
    assert [len(page) for page in pages] == [3, 3, 1]
    seen = [invoice["invoice_id"] for page in pages for invoice in page]
    assert len(seen) == len(set(seen))
    assert set(seen) == created
    stamps = [invoice["created_at"] for page in pages for invoice in page]
    assert stamps == sorted(stamps, reverse=True)


def test_another_partners_invoices_never_appear(
    client: httpx.Client, stranger: httpx.Client, firm: Firm
) -> None:
    mine = create_invoice(client, invoice_body(firm, external_reference="shared-ref"))
    assert list_all(stranger, "/invoices", "invoices") == []
    assert list_all(stranger, "/invoices", "invoices", external_reference="shared-ref") == []
    assert list_all(stranger, "/invoices", "invoices", firm_id=str(firm.id)) == []
    assert list_all(client, "/invoices", "invoices") == [mine]


def _cursor(*position: object) -> str:
    """A cursor as the API encodes one, of any content."""
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "W10"}, "cursor"),
        (
            {"cursor": _cursor("2024-01-01T00:00:00.000Z", fullwidth(str(uuid.uuid4())))},
            "cursor",
        ),
        ({"cursor": _cursor("2024-01-01T00:00:00.000Z", 5)}, "cursor"),
        ({"firm_id": "not-a-uuid"}, "firm_id"),
        ({"status": "Lost"}, "status"),
    ],
)
def test_bad_list_parameters_are_400(
    client: httpx.Client, params: dict[str, Any], field: str
) -> None:
    assert_problem(client.get(INVOICES, params=params), 400, "validation_error", field)


def test_nul_characters_are_never_a_server_error(
    client: httpx.Client, firm: Firm, database_url: str
) -> None:
    body = minimal_body(firm, description="line\u0000break", external_id="nul\u0000id")
    response = client.post(INVOICES, json=body)
    listed = client.get(INVOICES, params={"external_reference": "a\u0000b"})
    if database_url.startswith("postgresql"):
        # PostgreSQL cannot store NUL in text: refused as bad input.
        assert_problem(response, 400, "validation_error")
        assert_problem(listed, 400, "validation_error")
    else:
        assert response.status_code == 200, response.text
        assert response.json()["invoice"]["description"] == "line\u0000break"
        assert listed.status_code == 200, listed.text


def _parties(database: Database, firm: Firm) -> dict[str, list[tuple[str, Any, Any]]]:
    with database.session(read_only=True) as session:
        return {
            kind: [
                (row.external_id, row.details, row.updated_at)
                for row in session.scalars(select(model).where(model.firm_id == firm.id))
            ]
            for kind, model in (("matter", Matter), ("debtor", Debtor))
        }


def test_invoices_naming_the_same_debtor_and_matter_share_their_rows(
    client: httpx.Client, database: Database, firm: Firm
) -> None:
    first = create_invoice(client, invoice_body(firm))
    stored = _parties(database, firm)
    second = create_invoice(client, invoice_body(firm))
    assert _parties(database, firm) == stored
    assert [len(rows) for rows in stored.values()] == [1, 1]
    moved = {**invoice_body(firm)["debtor"], "email": "frank@new.example"}
    third = create_invoice(client, invoice_body(firm, debtor=moved))
    after = _parties(database, firm)
    assert after["matter"] == stored["matter"]
    assert [(external_id, details) for external_id, details, _ in after["debtor"]] == [
        (moved["external_id"], moved)
    ]
    assert first["debtor"]["email"] == second["debtor"]["email"] == "frank@email.com"
    assert third["debtor"]["email"] == "frank@new.example"


def test_concurrent_first_invoices_of_a_new_debtor_share_its_row(
    server: Server, partner: Partner, database: Database, firm: Firm
) -> None:
    """Twenty invoices racing to store the same new matter and debtor: every one is made,
    once, with its event, and they share one row of each."""
    attempts = 20
    parties = {
        "matter": {**invoice_body(firm)["matter"], "external_id": f"m-{uuid.uuid4()}"},
        "debtor": {**invoice_body(firm)["debtor"], "external_id": f"d-{uuid.uuid4()}"},
    }
    bodies = [invoice_body(firm, **parties) for _ in range(attempts)]
    barrier = threading.Barrier(attempts)

    def post(body: dict[str, Any]) -> httpx.Response:
        with partner_client(server, partner) as http:
            barrier.wait(timeout=30)
            return http.post(INVOICES, json=body)

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        responses = list(pool.map(post, bodies))

    assert [r.status_code for r in responses] == [200] * attempts, [r.text for r in responses]
    stored = _parties(database, firm)
    for kind, details in parties.items():
        assert [(row[0], row[1]) for row in stored[kind] if row[0] == details["external_id"]] == [
            (details["external_id"], details)
        ]
    external_ids = [body["external_id"] for body in bodies]
    with database.session(read_only=True) as session:
        invoices = session.execute(
            select(Invoice.matter_id, Invoice.debtor_id).where(
                Invoice.firm_id == firm.id, Invoice.external_id.in_(external_ids)
            )
        ).all()
        events = session.scalars(
            select(WebhookEvent.external_id).where(
                WebhookEvent.topic == Topic.INVOICE_CREATED,
                WebhookEvent.external_id.in_(external_ids),
            )
        ).all()
    assert len(invoices) == attempts
    assert len(set(invoices)) == 1
    assert sorted(events) == sorted(external_ids)


def test_a_refused_update_stores_none_of_its_details(
    client: httpx.Client, database: Database, firm: Firm
) -> None:
    body = invoice_body(firm)
    invoice_id = create_invoice(client, body)["invoice_id"]
    assert client.post(f"{INVOICES}/{invoice_id}/void").status_code == 200
    stored = _parties(database, firm)
    moved = {**body["debtor"], "email": "frank@moved.example"}
    new_matter = {**body["matter"], "external_id": f"m-{uuid.uuid4()}"}
    refused = client.post(INVOICES, json={**body, "debtor": moved, "matter": new_matter})
    assert_problem(refused, 409, "invoice_not_updatable")
    assert _parties(database, firm) == stored


def test_postgresql_creates_an_invoice_in_two_statements_outside_a_transaction(
    database_url: str, database: Database, firm: Firm
) -> None:
    """The firm's terms and the stored parties are read, then the invoice, a new debtor,
    the event and its deliveries are written by one statement: no BEGIN and COMMIT round
    trips (docs/performance.md)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no round trips to save, and its WITH cannot hold an INSERT")
    body = invoice_body(firm, debtor={**invoice_body(firm)["debtor"], "external_id": "d-new"})
    sent: list[tuple[str, bool]] = []

    def record(connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append((statement.split()[0], connection.connection.driver_connection.autocommit))

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        with database.unit_of_work() as session:
            view = service.upsert_invoice(
                session, firm.partner.id, InvoiceIn.model_validate(body), "http://pay.test"
            )
    finally:
        event.remove(database.engine, "before_cursor_execute", record)
    assert sent == [("SELECT", True), ("WITH", True)]
    with database.session(read_only=True) as session:
        stored = session.get(Invoice, view.invoice_id)
        assert stored is not None
        debtor = session.get(Debtor, stored.debtor_id)
        assert debtor is not None
        assert debtor.details == body["debtor"]
