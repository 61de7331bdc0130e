"""Firm onboarding by partners: ``POST /firms``, ``GET /firms`` and ``GET /firms/{id}``."""

import uuid
from typing import Any

import httpx
import pytest

from partnerpay.db import Database
from tests.support import (
    API,
    Partner,
    Server,
    arabic_indic,
    assert_problem,
    create_firm,
    create_partner,
    fullwidth,
    list_all,
    list_pages,
    partner_client,
)

ACCOUNT = {
    "account_name": "Smith Legal Office",
    "branch_code": "062-000",
    "account_number": "12345678",
    "country_code": "AU",
}


def firm_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "legal_name": "Smith Legal Pty Ltd",
        "trading_name": "Smith Legal",
        "external_id": f"firm-{uuid.uuid4()}",
        "currency": "AUD",
        "office_account": dict(ACCOUNT),
        "trust_account": {**ACCOUNT, "account_name": "Smith Legal Trust"},
        "metadata": {"crm_id": "42"},
    }
    body.update(overrides)
    return body


def post_firm(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"{API}/firms", json=body)
    assert response.status_code == 200, response.text
    firm: dict[str, Any] = response.json()["firm"]
    return firm


def firms_with_external_id(client: httpx.Client, external_id: str) -> list[dict[str, Any]]:
    return list_all(client, "/firms", "firms", external_id=external_id)


def test_created_firm_starts_pending_with_accounts(client: httpx.Client) -> None:
    body = firm_body()
    firm = post_firm(client, body)

    assert firm["status"] == "Pending"
    uuid.UUID(firm["firm_id"])
    for field in ("legal_name", "trading_name", "external_id", "currency", "metadata"):
        assert firm[field] == body[field], field
    office, trust = firm["office_account"], firm["trust_account"]
    # The partner sees each account number masked: all but its last three characters.
    shown = {"account_number": "*****678"}
    assert office == {**body["office_account"], **shown, "account_id": office["account_id"]}
    assert trust == {**body["trust_account"], **shown, "account_id": trust["account_id"]}
    assert uuid.UUID(office["account_id"]) != uuid.UUID(trust["account_id"])
    assert firm["created_at"] == firm["updated_at"]
    assert firm["created_at"].endswith("Z")

    read = client.get(f"{API}/firms/{firm['firm_id']}")
    assert read.status_code == 200, read.text
    assert read.json() == {"firm": firm}


def test_an_australian_branch_code_is_kept_as_a_bsb_and_others_as_sent(
    client: httpx.Client,
) -> None:
    british = {**ACCOUNT, "country_code": "GB", "branch_code": "404784"}
    firm = post_firm(
        client,
        firm_body(office_account={**ACCOUNT, "branch_code": "062000"}, trust_account=british),
    )
    assert firm["office_account"]["branch_code"] == "062-000"
    assert firm["trust_account"]["branch_code"] == "404784"


def test_minimal_firm_has_defaults_and_omits_what_is_missing(client: httpx.Client) -> None:
    firm = post_firm(client, {"trading_name": "Solo Practice"})
    assert firm["legal_name"] == "Solo Practice"
    assert firm["currency"] == "AUD"
    assert firm["status"] == "Pending"
    for absent in ("external_id", "office_account", "trust_account"):
        assert absent not in firm, absent


def test_list_pages_through_every_firm_newest_first(client: httpx.Client) -> None:
    created = [post_firm(client, firm_body())["firm_id"] for _ in range(5)]

    pages = list_pages(client, "/firms", "firms", limit=2)
    assert [len(page) for page in pages] == [2, 2, 1]
    listed = [firm for page in pages for firm in page]
    ids = [firm["firm_id"] for firm in listed]
    assert sorted(ids) == sorted(created)
    stamps = [firm["created_at"] for firm in listed]
    assert stamps == sorted(stamps, reverse=True)

    whole = client.get(f"{API}/firms", params={"limit": 5})
    assert whole.json()["has_more"] is False
    assert "next_cursor" not in whole.json()
    assert [firm["firm_id"] for firm in whole.json()["firms"]] == ids


def test_list_filters_by_external_id_and_status(
    client: httpx.Client, database: Database, partner: Partner
) -> None:
    wanted = post_firm(client, firm_body())
    post_firm(client, firm_body())
    active = create_firm(database, partner)

    assert firms_with_external_id(client, wanted["external_id"]) == [wanted]
    assert firms_with_external_id(client, "no-such-firm") == []
    listed = list_all(client, "/firms", "firms", status="Active")
    assert [firm["firm_id"] for firm in listed] == [str(active.id)]


def test_duplicate_external_id_is_409_and_writes_nothing(
    client: httpx.Client, server: Server, database: Database
) -> None:
    body = firm_body()
    first = post_firm(client, body)

    again = client.post(f"{API}/firms", json={**body, "trading_name": "Another"})
    assert_problem(again, 409, "firm_already_exists")
    assert firms_with_external_id(client, body["external_id"]) == [first]

    # The external id is the partner's own: another partner may use the same one.
    with partner_client(server, create_partner(database)) as other:
        assert post_firm(other, body)["firm_id"] != first["firm_id"]


def test_another_partners_firm_is_404_and_never_listed(
    client: httpx.Client, server: Server, database: Database
) -> None:
    with partner_client(server, create_partner(database)) as other:
        foreign = post_firm(other, firm_body())

    response = client.get(f"{API}/firms/{foreign['firm_id']}")
    problem = assert_problem(response, 404, "not_found")
    assert foreign["trading_name"] not in response.text
    assert problem["error_context"]["fields"] == []
    assert list_all(client, "/firms", "firms") == []
    assert firms_with_external_id(client, foreign["external_id"]) == []


@pytest.mark.parametrize("firm_id", ["not-a-uuid", str(uuid.uuid4()), "123"])
def test_malformed_or_unknown_firm_id_is_404(client: httpx.Client, firm_id: str) -> None:
    assert_problem(client.get(f"{API}/firms/{firm_id}"), 404, "not_found")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"office_account": {**ACCOUNT, "branch_code": "06 2000!"}}, "office_account.branch_code"),
        ({"trust_account": {**ACCOUNT, "account_number": ""}}, "trust_account.account_number"),
        ({"office_account": {**ACCOUNT, "country_code": "au"}}, "office_account.country_code"),
        ({"office_account": {**ACCOUNT, "country_code": "ZZ"}}, "office_account.country_code"),
        ({"office_account": {**ACCOUNT, "branch_code": "06200"}}, "office_account.branch_code"),
        ({"trust_account": {**ACCOUNT, "account_number": "123"}}, "trust_account.account_number"),
        ({"office_account": {"branch_code": "062000"}}, "office_account.account_name"),
        ({"office_account": {**ACCOUNT, "bsb": "062000"}}, "office_account.bsb"),
        ({"nickname": "Smithy"}, "nickname"),
        ({"status": "Active"}, "status"),
        ({"trading_name": None}, "trading_name"),
        ({"trading_name": "   "}, "trading_name"),
        ({"currency": "EUR"}, "currency"),
        ({"metadata": {"crm_id": 42}}, "metadata.crm_id"),
        ({"external_id": ""}, "external_id"),
        ({"surcharge_percent": fullwidth("1.5")}, "surcharge_percent"),
        ({"surcharge_percent": arabic_indic("2")}, "surcharge_percent"),
    ],
)
def test_invalid_firm_is_400_naming_the_field(
    client: httpx.Client, change: dict[str, Any], field: str
) -> None:
    body = firm_body(**change)
    assert_problem(client.post(f"{API}/firms", json=body), 400, "validation_error", field)
    assert list_all(client, "/firms", "firms") == []


def test_missing_trading_name_is_400(client: httpx.Client) -> None:
    body = firm_body()
    del body["trading_name"]
    problem = assert_problem(
        client.post(f"{API}/firms", json=body), 400, "validation_error", "trading_name"
    )
    assert problem["error_context"]["fields"] == [
        {"field": "trading_name", "message": "is required"}
    ]
    assert firms_with_external_id(client, body["external_id"]) == []


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"cursor": "garbage"}, "cursor")],
)
def test_bad_list_parameters_are_400(
    client: httpx.Client, params: dict[str, Any], field: str
) -> None:
    assert_problem(client.get(f"{API}/firms", params=params), 400, "validation_error", field)
