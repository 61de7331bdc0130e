"""A firm's bank accounts (FeeWise's BankAccountApi): ``/firms/{firm_id}/accounts...`` and
``/firms/{firm_id}/artifacts/settlement-account/{id}/replace``."""

import uuid
from typing import Any

import httpx
import pytest

from partnerpay.db import Database
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
    invoice_body,
    partner_client,
)

ACCOUNT: dict[str, Any] = {
    "account_type": "Office",
    "account_name": "Smith Legal Operating",
    "account_holder_type": "company",
    "account_number": "12345678",
    "branch_code": "062-000",
    "country_code": "AU",
    "address": "1 Harbour St, Sydney",
    "alias": "Operating",
    "bank": "Commonwealth Bank",
    "external_id": "pms-account-1",
}
EVENT_FIELDS = {
    "firm_id",
    "account_id",
    "account_type",
    "account_name",
    "account_holder_type",
    "account_number",
    "branch_code",
    "address",
    "alias",
    "bank",
    "country_code",
    "last_updated_at",
    "status",
    "is_default",
}


def accounts_path(firm_id: object) -> str:
    return f"{API}/firms/{firm_id}/accounts"


def account_path(firm_id: object, account_id: object) -> str:
    return f"{accounts_path(firm_id)}/{account_id}"


def replace_path(firm_id: object, account_id: object) -> str:
    return f"{API}/firms/{firm_id}/artifacts/settlement-account/{account_id}/replace"


def new_account(client: httpx.Client, firm_id: object, **overrides: Any) -> dict[str, Any]:
    """POST a bank account (``ACCOUNT`` with a fresh number unless given), expect 201."""
    body = {**ACCOUNT, "account_number": str(uuid.uuid4().int)[:8], **overrides}
    response = client.post(accounts_path(firm_id), json=body)
    assert response.status_code == 201, response.text
    account: dict[str, Any] = response.json()
    return account


def listed(client: httpx.Client, firm_id: object) -> dict[str, list[str]]:
    """The firm's account ids by list, in order."""
    response = client.get(accounts_path(firm_id))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"office_accounts", "trust_accounts"}, body
    return {kind: [a["account_id"] for a in accounts] for kind, accounts in body.items()}


def read_account(client: httpx.Client, firm_id: object, account_id: str) -> dict[str, Any]:
    response = client.get(account_path(firm_id, account_id))
    assert response.status_code == 200, response.text
    account: dict[str, Any] = response.json()
    return account


def read_firm(client: httpx.Client, firm_id: object) -> dict[str, Any]:
    response = client.get(f"{API}/firms/{firm_id}")
    assert response.status_code == 200, response.text
    firm: dict[str, Any] = response.json()["firm"]
    return firm


def office_default(client: httpx.Client, firm_id: object) -> str:
    """The id of the firm's default Office account (the sandbox one the fixture made)."""
    account_id: str = read_firm(client, firm_id)["office_account"]["account_id"]
    return account_id


def firm_without_accounts(client: httpx.Client) -> str:
    response = client.post(
        f"{API}/firms", json={"trading_name": "Smith Legal", "external_id": f"f-{uuid.uuid4()}"}
    )
    assert response.status_code == 200, response.text
    firm_id: str = response.json()["firm"]["firm_id"]
    return firm_id


def event_log(client: httpx.Client, topic: str) -> list[dict[str, Any]]:
    """This partner's events of ``topic``, oldest first: each as the log lists it."""
    response = client.get(f"{API}/events", params={"topic": topic})
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def reported(client: httpx.Client, topic: str) -> list[dict[str, Any]]:
    return [event["payload"]["event"] for event in event_log(client, topic)]


def record_payment(client: httpx.Client, invoice: dict[str, Any], amount: str) -> None:
    body = {
        "artifact_id": invoice["invoice_id"],
        "amount": amount,
        "external_id": f"cash-{uuid.uuid4()}",
        "payment_type": "Cash",
    }
    response = client.post(f"{API}/payments/external", json=body)
    assert response.status_code == 200, response.text


def authorise(anonymous: httpx.Client, invoice: dict[str, Any]) -> None:
    """Pay the invoice by direct debit, which stays clearing (``Authorised``)."""
    body = {
        "method": "DirectDebit",
        "direct_debit": {"account_name": "Frank", "bsb": "062-000", "account_number": "12345678"},
        "idempotency_key": str(uuid.uuid4()),
    }
    response = anonymous.post(f"/pay/{invoice['invoice_id']}/payments", json=body)
    assert response.status_code == 200, response.text


def settling_to(firm: Firm, account_id: str, **overrides: Any) -> dict[str, Any]:
    """The guide's invoice for this firm, settling to the account it names by id."""
    return invoice_body(
        firm, settlement_account=None, settlement_account_id=account_id, **overrides
    )


def read_invoice(client: httpx.Client, invoice_id: str) -> dict[str, Any]:
    response = client.get(f"{API}/invoices/{invoice_id}")
    assert response.status_code == 200, response.text
    invoice: dict[str, Any] = response.json()["invoice"]
    return invoice


# --- create ------------------------------------------------------------------------------


def test_create_answers_201_with_the_number_masked_and_the_first_of_a_type_the_default(
    client: httpx.Client,
) -> None:
    firm_id = firm_without_accounts(client)
    response = client.post(accounts_path(firm_id), json=ACCOUNT)
    assert response.status_code == 201, response.text
    first = response.json()

    assert first == {
        **ACCOUNT,
        "account_number": "*****678",
        "account_id": first["account_id"],
        "status": "Valid",
        "is_default": True,
        "default_accounts": ["Office"],
        "created_at": first["created_at"],
        "updated_at": first["created_at"],
    }
    uuid.UUID(first["account_id"])
    assert "12345678" not in response.text

    second = new_account(client, firm_id)
    assert (second["is_default"], "default_accounts" in second) == (False, False)
    trust = new_account(client, firm_id, account_type="Trust")
    assert (trust["is_default"], trust["default_accounts"]) == (True, ["Trust"])

    firm = read_firm(client, firm_id)
    assert firm["office_account"]["account_id"] == first["account_id"]
    assert firm["office_account"]["account_number"] == "*****678"
    assert firm["trust_account"]["account_id"] == trust["account_id"]


def test_a_bsb_is_kept_as_123_456_and_other_countries_keep_their_branch_code(
    client: httpx.Client, firm: Firm
) -> None:
    bsb = new_account(client, firm.id, branch_code="062000", account_number="12345")
    assert (bsb["branch_code"], bsb["account_number"]) == ("062-000", "**345")
    assert read_account(client, firm.id, bsb["account_id"])["branch_code"] == "062-000"

    british = new_account(
        client, firm.id, country_code="GB", branch_code="404784", account_number="ABCD12345678"
    )
    assert (british["branch_code"], british["account_number"]) == ("404784", "*********678")


def test_the_holder_is_a_company_unless_said_otherwise(client: httpx.Client, firm: Firm) -> None:
    body = {key: value for key, value in ACCOUNT.items() if key != "account_holder_type"}
    response = client.post(accounts_path(firm.id), json=body)
    assert response.status_code == 201, response.text
    assert response.json()["account_holder_type"] == "company"
    individual = new_account(client, firm.id, account_holder_type="Individual")
    assert individual["account_holder_type"] == "individual"


def _without(field: str) -> dict[str, Any]:
    return {key: value for key, value in ACCOUNT.items() if key != field}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_without("account_type"), "account_type"),
        (_without("account_name"), "account_name"),
        (_without("account_number"), "account_number"),
        (_without("branch_code"), "branch_code"),
        (_without("country_code"), "country_code"),
        ({**ACCOUNT, "account_type": "Billing"}, "account_type"),
        ({**ACCOUNT, "account_name": "  "}, "account_name"),
        ({**ACCOUNT, "branch_code": "06200"}, "branch_code"),
        ({**ACCOUNT, "branch_code": "062-0000"}, "branch_code"),
        ({**ACCOUNT, "branch_code": "06-2000"}, "branch_code"),
        ({**ACCOUNT, "branch_code": "ABC123"}, "branch_code"),
        ({**ACCOUNT, "account_number": "1234"}, "account_number"),
        ({**ACCOUNT, "account_number": "1234567890"}, "account_number"),
        ({**ACCOUNT, "account_number": "12-3456"}, "account_number"),
        ({**ACCOUNT, "country_code": "au"}, "country_code"),
        ({**ACCOUNT, "country_code": "AUS"}, "country_code"),
        ({**ACCOUNT, "country_code": "ZZ"}, "country_code"),
        ({**ACCOUNT, "account_holder_type": "partnership"}, "account_holder_type"),
        ({**ACCOUNT, "account_id": str(uuid.uuid4())}, "account_id"),
        ({**ACCOUNT, "is_default": True}, "is_default"),
        ({**ACCOUNT, "default_accounts": ["Office"]}, "default_accounts"),
        ({**ACCOUNT, "status": "Valid"}, "status"),
        ({**ACCOUNT, "bsb": "062-000"}, "bsb"),
    ],
)
def test_an_invalid_account_is_400_naming_the_field_and_writes_nothing(
    client: httpx.Client, firm: Firm, body: dict[str, Any], field: str
) -> None:
    before = listed(client, firm.id)
    assert_problem(client.post(accounts_path(firm.id), json=body), 400, "validation_error", field)
    assert listed(client, firm.id) == before


def test_platform_set_and_unknown_fields_say_which_they_are(
    client: httpx.Client, firm: Firm
) -> None:
    body = {**ACCOUNT, "is_default": True, "nickname": "Ops"}
    problem = assert_problem(
        client.post(accounts_path(firm.id), json=body), 400, "validation_error"
    )
    assert problem["error_context"]["fields"] == [
        {"field": "is_default", "message": "is set by the platform and must not be sent"},
        {"field": "nickname", "message": "is not a field of this request"},
    ]


def test_the_same_account_again_is_409_until_it_is_deleted(
    client: httpx.Client, firm: Firm
) -> None:
    first = new_account(client, firm.id, account_number="87654321", branch_code="062-000")
    again = client.post(
        accounts_path(firm.id),
        json={**ACCOUNT, "account_number": "87654321", "branch_code": "062000"},
    )
    problem = assert_problem(again, 409, "bank_account_already_exists")
    assert first["account_id"] in problem["detail"]
    assert listed(client, firm.id)["office_accounts"].count(first["account_id"]) == 1

    # The account type is part of what makes it the same account.
    new_account(client, firm.id, account_type="Trust", account_number="87654321")

    assert client.delete(account_path(firm.id, first["account_id"])).status_code == 204
    back = new_account(client, firm.id, account_number="87654321")
    assert back["account_id"] != first["account_id"]


# --- list and get ------------------------------------------------------------------------


def test_the_list_has_each_type_default_first_then_oldest_first(client: httpx.Client) -> None:
    firm_id = firm_without_accounts(client)
    assert listed(client, firm_id) == {"office_accounts": [], "trust_accounts": []}
    office = [new_account(client, firm_id)["account_id"] for _ in range(3)]
    trust = new_account(client, firm_id, account_type="Trust")["account_id"]
    assert listed(client, firm_id) == {"office_accounts": office, "trust_accounts": [trust]}

    made_default = client.post(f"{account_path(firm_id, office[2])}/default")
    assert made_default.status_code == 200, made_default.text
    assert listed(client, firm_id) == {
        "office_accounts": [office[2], office[0], office[1]],
        "trust_accounts": [trust],
    }
    whole = client.get(accounts_path(firm_id)).json()
    assert [a["is_default"] for a in whole["office_accounts"]] == [True, False, False]
    assert all(a["account_number"].startswith("*****") for a in whole["office_accounts"])


def test_get_answers_the_account_and_404_for_what_is_not_the_firms(
    client: httpx.Client, firm: Firm, database: Database, partner: Partner
) -> None:
    created = new_account(client, firm.id)
    assert read_account(client, firm.id, created["account_id"]) == created

    sibling = create_firm(database, partner)
    for unknown in (str(uuid.uuid4()), "not-a-uuid", office_default(client, sibling.id)):
        assert_problem(client.get(account_path(firm.id, unknown)), 404, "not_found")
    assert_problem(client.get(account_path(uuid.uuid4(), created["account_id"])), 404, "not_found")


# --- default -----------------------------------------------------------------------------


def test_a_new_default_takes_over_and_both_changes_are_reported(
    client: httpx.Client, firm: Firm
) -> None:
    previous = office_default(client, firm.id)
    chosen = new_account(client, firm.id, external_id="pms-7")
    seen = len(event_log(client, "firm.bank-account.updated"))

    response = client.post(f"{account_path(firm.id, chosen['account_id'])}/default")
    assert response.status_code == 200, response.text
    answered = response.json()
    assert set(answered) == {"bank_account"}
    made = answered["bank_account"]
    assert (made["account_id"], made["is_default"], made["default_accounts"]) == (
        chosen["account_id"],
        True,
        ["Office"],
    )
    assert made["updated_at"] > chosen["updated_at"]
    assert read_account(client, firm.id, previous)["is_default"] is False
    assert read_firm(client, firm.id)["office_account"]["account_id"] == chosen["account_id"]

    # Both changed, and each is reported (events of one request share their instant).
    events = {
        e["payload"]["event"]["account_id"]: e
        for e in event_log(client, "firm.bank-account.updated")[seen:]
    }
    assert {key: e["payload"]["event"]["is_default"] for key, e in events.items()} == {
        previous: False,
        chosen["account_id"]: True,
    }
    made_event = events[chosen["account_id"]]
    assert made_event["external_id"] == "pms-7"
    assert set(made_event["payload"]["event"]) == EVENT_FIELDS
    assert made_event["payload"]["event"]["last_updated_at"] == made["updated_at"]

    again = client.post(f"{account_path(firm.id, chosen['account_id'])}/default")
    assert again.status_code == 200, again.text
    assert again.json() == answered
    assert len(event_log(client, "firm.bank-account.updated")) == seen + 2


def test_an_invoice_naming_a_type_settles_to_its_default(client: httpx.Client, firm: Firm) -> None:
    sandbox = office_default(client, firm.id)
    chosen = new_account(client, firm.id)["account_id"]
    before = create_invoice(client, invoice_body(firm, settlement_account="Office"))
    assert before["settlement_account_id"] == sandbox

    client.post(f"{account_path(firm.id, chosen)}/default")
    after = create_invoice(client, invoice_body(firm, settlement_account="Office"))
    assert (after["settlement_account_id"], after["settlement_account"]) == (chosen, "Office")
    left_out = create_invoice(client, invoice_body(firm, settlement_account=None))
    assert left_out["settlement_account_id"] == chosen
    named = create_invoice(client, settling_to(firm, sandbox))
    assert named["settlement_account_id"] == sandbox


# --- delete ------------------------------------------------------------------------------


def test_a_deleted_account_is_gone_but_reported(client: httpx.Client, firm: Firm) -> None:
    account = new_account(client, firm.id)
    response = client.delete(account_path(firm.id, account["account_id"]))
    assert response.status_code == 204, response.text
    assert response.content == b""

    assert_problem(client.get(account_path(firm.id, account["account_id"])), 404, "not_found")
    assert account["account_id"] not in listed(client, firm.id)["office_accounts"]
    assert_problem(
        client.post(f"{account_path(firm.id, account['account_id'])}/default"), 404, "not_found"
    )
    assert_problem(client.delete(account_path(firm.id, account["account_id"])), 404, "not_found")
    named = client.post(f"{API}/invoices", json=settling_to(firm, account["account_id"]))
    assert_problem(named, 409, "invalid_settlement_account")

    (deleted,) = [
        e
        for e in event_log(client, "firm.bank-account.deleted")
        if e["payload"]["event"]["account_id"] == account["account_id"]
    ]
    assert deleted["external_id"] == ACCOUNT["external_id"]
    payload = deleted["payload"]["event"]
    assert (payload["account_number"], payload["is_default"]) == (account["account_number"], False)
    assert payload["last_updated_at"] > account["updated_at"]


def test_an_account_without_an_external_id_is_reported_under_its_firms(
    client: httpx.Client,
) -> None:
    firm_id = firm_without_accounts(client)
    account = new_account(client, firm_id, external_id=None)
    assert "external_id" not in account
    assert client.delete(account_path(firm_id, account["account_id"])).status_code == 204
    for topic in ("firm.bank-account.created", "firm.bank-account.deleted"):
        (event,) = [
            e
            for e in event_log(client, topic)
            if e["payload"]["event"]["account_id"] == account["account_id"]
        ]
        assert event["external_id"] == read_firm(client, firm_id)["external_id"]


def test_the_default_goes_only_once_another_is_the_default(
    client: httpx.Client, firm: Firm
) -> None:
    sandbox = office_default(client, firm.id)
    other = new_account(client, firm.id)["account_id"]
    refused = client.delete(account_path(firm.id, sandbox))
    problem = assert_problem(refused, 409, "bank_account_in_use")
    assert "default" in problem["detail"]

    client.post(f"{account_path(firm.id, other)}/default")
    assert client.delete(account_path(firm.id, sandbox)).status_code == 204
    assert listed(client, firm.id)["office_accounts"] == [other]


def test_an_active_firm_keeps_an_office_account(
    client: httpx.Client, firm: Firm, pending_firm: Firm
) -> None:
    only = office_default(client, firm.id)
    problem = assert_problem(client.delete(account_path(firm.id, only)), 409, "bank_account_in_use")
    assert "Active" in problem["detail"]
    assert listed(client, firm.id)["office_accounts"] == [only]

    # A firm that is not Active may go without, and its next account is the default.
    pending_only = office_default(client, pending_firm.id)
    assert client.delete(account_path(pending_firm.id, pending_only)).status_code == 204
    assert "office_account" not in read_firm(client, pending_firm.id)
    assert new_account(client, pending_firm.id)["is_default"] is True

    # The only Trust account of an Active firm may go.
    trust = read_firm(client, firm.id)["trust_account"]["account_id"]
    assert client.delete(account_path(firm.id, trust)).status_code == 204


def test_an_account_an_open_invoice_settles_to_stays_until_it_is_paid_or_voided(
    client: httpx.Client, firm: Firm
) -> None:
    account = new_account(client, firm.id)["account_id"]
    to_void = create_invoice(client, settling_to(firm, account))
    to_pay = create_invoice(client, settling_to(firm, account, amount="10"))
    record_payment(client, to_pay, "4.00")  # partly paid: still open

    assert client.post(f"{API}/invoices/{to_void['invoice_id']}/void").status_code == 200
    problem = assert_problem(
        client.delete(account_path(firm.id, account)), 409, "bank_account_in_use"
    )
    assert to_pay["invoice_id"] in problem["detail"]

    record_payment(client, to_pay, "6.00")
    assert read_invoice(client, to_pay["invoice_id"])["status"] == "Paid"
    assert client.delete(account_path(firm.id, account)).status_code == 204
    # The paid invoice still names the account it was paid to.
    assert read_invoice(client, to_pay["invoice_id"])["settlement_account_id"] == account


# --- replace -----------------------------------------------------------------------------


def test_replace_moves_the_submitted_invoices_and_reports_each(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm
) -> None:
    old = new_account(client, firm.id)["account_id"]
    new = new_account(client, firm.id)["account_id"]
    methods = {"payment_methods_override": ["Card", "DirectDebit"]}
    submitted = [create_invoice(client, settling_to(firm, old, **methods)) for _ in range(2)]
    partly_paid = create_invoice(client, settling_to(firm, old))
    record_payment(client, partly_paid, "1.00")
    paid = create_invoice(client, settling_to(firm, old, amount="5.00"))
    record_payment(client, paid, "5.00")
    voided = create_invoice(client, settling_to(firm, old))
    client.post(f"{API}/invoices/{voided['invoice_id']}/void")
    clearing = create_invoice(client, settling_to(firm, old, **methods))
    authorise(anonymous, clearing)
    elsewhere = create_invoice(client, invoice_body(firm, settlement_account="Office"))
    moving = [*submitted, partly_paid]
    before = {i["invoice_id"]: read_invoice(client, i["invoice_id"]) for i in moving}
    seen = len(event_log(client, "invoice.updated"))

    response = client.post(
        replace_path(firm.id, old), json={"new_account_id": new, "artifact_type": "Invoice"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"updated": 3}

    for invoice_id, was in before.items():
        now = read_invoice(client, invoice_id)
        assert now["settlement_account_id"] == new
        assert now["updated_at"] > was["updated_at"]
        assert now == {**was, "settlement_account_id": new, "updated_at": now["updated_at"]}
    for stays in (paid, voided, clearing):
        assert read_invoice(client, stays["invoice_id"])["settlement_account_id"] == old
    assert read_invoice(client, clearing["invoice_id"])["status"] == "Authorised"
    assert read_invoice(client, elsewhere["invoice_id"])["settlement_account_id"] != new

    updates = reported(client, "invoice.updated")[seen:]
    assert sorted(u["invoice_id"] for u in updates) == sorted(before)
    assert all(u == read_invoice(client, u["invoice_id"]) for u in updates)

    again = client.post(
        replace_path(firm.id, old), json={"new_account_id": new, "artifact_type": "Invoice"}
    )
    assert again.json() == {"updated": 0}
    # The direct debit still clearing keeps the old account in use.
    client.post(f"{account_path(firm.id, new)}/default")
    assert_problem(client.delete(account_path(firm.id, old)), 409, "bank_account_in_use")


def test_replace_takes_only_an_account_of_the_same_firm_and_type(
    client: httpx.Client, firm: Firm, database: Database, partner: Partner
) -> None:
    old = office_default(client, firm.id)
    invoice = create_invoice(client, invoice_body(firm, settlement_account="Office"))
    trust = read_firm(client, firm.id)["trust_account"]["account_id"]
    sibling = create_firm(database, partner)
    deleted = new_account(client, firm.id)["account_id"]
    client.delete(account_path(firm.id, deleted))

    for wrong in (trust, office_default(client, sibling.id), deleted, str(uuid.uuid4())):
        body = {"new_account_id": wrong, "artifact_type": "Invoice"}
        assert_problem(
            client.post(replace_path(firm.id, old), json=body), 409, "invalid_settlement_account"
        )
    assert read_invoice(client, invoice["invoice_id"])["settlement_account_id"] == old

    new = new_account(client, firm.id)["account_id"]
    for body, field in (
        ({"new_account_id": new, "artifact_type": "Charge"}, "artifact_type"),
        ({"new_account_id": "nope", "artifact_type": "Invoice"}, "new_account_id"),
        ({"artifact_type": "Invoice"}, "new_account_id"),
        ({"new_account_id": new, "artifact_type": "Invoice", "extra": 1}, "extra"),
    ):
        response = client.post(replace_path(firm.id, old), json=body)
        assert_problem(response, 400, "validation_error", field)
    assert_problem(
        client.post(
            replace_path(firm.id, uuid.uuid4()),
            json={"new_account_id": new, "artifact_type": "Invoice"},
        ),
        404,
        "not_found",
    )


# --- events ------------------------------------------------------------------------------


def test_a_new_account_is_reported_masked(client: httpx.Client, firm: Firm) -> None:
    created = new_account(client, firm.id, account_number="99887766")
    (event,) = [
        e
        for e in event_log(client, "firm.bank-account.created")
        if e["payload"]["event"]["account_id"] == created["account_id"]
    ]
    assert event["external_id"] == ACCOUNT["external_id"]
    assert event["payload"]["event_type"] == "firm.bank-account.created"
    payload = event["payload"]["event"]
    assert payload == {
        "firm_id": str(firm.id),
        "account_id": created["account_id"],
        "account_type": "Office",
        "account_name": ACCOUNT["account_name"],
        "account_holder_type": "company",
        "account_number": "*****766",
        "branch_code": "062-000",
        "address": ACCOUNT["address"],
        "alias": ACCOUNT["alias"],
        "bank": ACCOUNT["bank"],
        "country_code": "AU",
        "last_updated_at": created["updated_at"],
        "status": "Valid",
        "is_default": False,
    }
    assert "99887766" not in str(event)


# --- tenancy -----------------------------------------------------------------------------


def test_another_partners_firm_and_accounts_are_404_everywhere(
    client: httpx.Client, firm: Firm, server: Server, database: Database
) -> None:
    other_partner = create_partner(database)
    other_firm = create_firm(database, other_partner)
    with partner_client(server, other_partner) as other:
        theirs = new_account(other, other_firm.id)["account_id"]
        their_default = office_default(other, other_firm.id)
        their_accounts = listed(other, other_firm.id)
    mine = new_account(client, firm.id)["account_id"]
    move = {"new_account_id": mine, "artifact_type": "Invoice"}

    foreign_firm = [
        client.post(accounts_path(other_firm.id), json=ACCOUNT),
        client.get(accounts_path(other_firm.id)),
        client.get(account_path(other_firm.id, theirs)),
        client.delete(account_path(other_firm.id, theirs)),
        client.post(f"{account_path(other_firm.id, theirs)}/default"),
        client.post(replace_path(other_firm.id, their_default), json=move),
    ]
    foreign_account = [
        client.get(account_path(firm.id, theirs)),
        client.delete(account_path(firm.id, theirs)),
        client.post(f"{account_path(firm.id, theirs)}/default"),
        client.post(replace_path(firm.id, theirs), json=move),
    ]
    for response in foreign_firm + foreign_account:
        assert_problem(response, 404, "not_found")
        assert ACCOUNT["account_name"] not in response.text
    into_theirs = {"new_account_id": theirs, "artifact_type": "Invoice"}
    assert_problem(
        client.post(replace_path(firm.id, mine), json=into_theirs),
        409,
        "invalid_settlement_account",
    )

    with partner_client(server, other_partner) as other:
        assert listed(other, other_firm.id) == their_accounts
        assert office_default(other, other_firm.id) == their_default


def test_bank_account_events_reach_subscribed_webhooks(
    client: httpx.Client, firm: Firm, receiver: Receiver
) -> None:
    topics = ["firm.bank-account.created", "firm.bank-account.deleted"]
    subscribed = client.post(
        f"{API}/webhooks", json={"name": "accounts", "url": receiver.url, "events": topics}
    )
    assert subscribed.status_code == 200, subscribed.text
    account = new_account(client, firm.id)
    client.delete(account_path(firm.id, account["account_id"]))

    received = receiver.wait_for(2)
    envelopes = sorted((r.envelope for r in received), key=lambda e: e["event_type"])
    assert [(e["event_type"], e["event"]["account_id"]) for e in envelopes] == [
        ("firm.bank-account.created", account["account_id"]),
        ("firm.bank-account.deleted", account["account_id"]),
    ]
