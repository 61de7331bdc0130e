"""The published API description, the docs page and the health check."""

import re
import uuid
from typing import Any

import httpx
import pytest

from tests.support import API, assert_problem, fullwidth

# Every partner route of DESIGN.md sections 3 and 9.
DOCUMENTED_ROUTES = {
    ("post", "/invoices"),
    ("get", "/invoices"),
    ("get", "/invoices/{invoice_id}"),
    ("get", "/invoices/firm/{firm_id}/{external_id}"),
    ("post", "/invoices/{invoice_id}/adjust-amount"),
    ("post", "/invoices/{invoice_id}/void"),
    ("post", "/firms"),
    ("get", "/firms"),
    ("get", "/firms/{firm_id}"),
    ("post", "/payments/external"),
    ("post", "/payments/{payment_id}/refunds"),
    ("get", "/payments/{payment_id}/refunds"),
    ("post", "/webhooks"),
    ("get", "/webhooks"),
    ("put", "/webhooks"),
    ("delete", "/webhooks/{webhook_id}"),
    ("get", "/events/topics"),
    ("get", "/events"),
    ("post", "/events/{webhook_event_id}/redeliver"),
    ("post", "/rotatekey"),
    ("post", "/firms/{firm_id}/accounts"),
    ("get", "/firms/{firm_id}/accounts"),
    ("get", "/firms/{firm_id}/accounts/{account_id}"),
    ("delete", "/firms/{firm_id}/accounts/{account_id}"),
    ("post", "/firms/{firm_id}/accounts/{account_id}/default"),
    ("post", "/firms/{firm_id}/artifacts/settlement-account/{settlement_account_id}/replace"),
}
PATH_PARAMETER = re.compile(r"\{[^}]+\}")


@pytest.fixture
def spec(anonymous: httpx.Client) -> dict[str, Any]:
    response = anonymous.get("/openapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    document: dict[str, Any] = response.json()
    return document


def partner_operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path.removeprefix(API)): operation
        for path, operations in spec["paths"].items()
        if path.startswith(API)
        for method, operation in operations.items()
    }


def test_every_partner_route_is_listed(spec: dict[str, Any]) -> None:
    assert set(partner_operations(spec)) >= DOCUMENTED_ROUTES


def test_every_listed_operation_is_served_and_authenticated(
    spec: dict[str, Any], anonymous: httpx.Client
) -> None:
    for method, path in partner_operations(spec):
        concrete = PATH_PARAMETER.sub(str(uuid.uuid4()), path)
        response = anonymous.request(method, f"{API}{concrete}", json={})
        assert_problem(response, 401, "unauthorized")


def test_every_partner_operation_needs_both_headers_together(spec: dict[str, Any]) -> None:
    for key, operation in partner_operations(spec).items():
        assert operation["security"] == [{"ChannelPartnerId": [], "ApiKey": []}], key
        assert "401" in operation["responses"], key


def test_security_schemes_are_the_two_headers(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    headers = {(s["type"], s["in"], s["name"]) for s in schemes.values()}
    assert headers == {
        ("apiKey", "header", "X-CHANNEL-PARTNER-ID"),
        ("apiKey", "header", "X-API-KEY"),
    }


def test_create_invoice_takes_invoice_in(spec: dict[str, Any]) -> None:
    body = spec["paths"][f"{API}/invoices"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InvoiceIn"
    }
    invoice_in = spec["components"]["schemas"]["InvoiceIn"]
    assert {"firm_id", "external_id", "amount"} <= set(invoice_in["required"])
    assert {"amount", "currency", "due_date", "line_items", "settlement_account"} <= set(
        invoice_in["properties"]
    )
    for platform_set in ("invoice_id", "status", "payment_uri"):
        assert platform_set not in invoice_in["properties"]


def _answers(operation: dict[str, Any], status: str) -> Any:
    return operation["responses"][status]["content"]["application/json"]["schema"]


def test_bank_account_routes_describe_what_they_take_and_answer(spec: dict[str, Any]) -> None:
    operations = partner_operations(spec)
    accounts, account = "/firms/{firm_id}/accounts", "/firms/{firm_id}/accounts/{account_id}"
    replace = "/firms/{firm_id}/artifacts/settlement-account/{settlement_account_id}/replace"
    answered = {
        ("post", accounts, "201"): "BankAccountOut",
        ("get", accounts, "200"): "BankAccountsResponse",
        ("get", account, "200"): "BankAccountOut",
        ("post", f"{account}/default", "200"): "BankAccountResponse",
        ("post", replace, "200"): "UpdatedCount",
    }
    for (method, path, status), model in answered.items():
        operation = operations[(method, path)]
        assert _answers(operation, status) == {"$ref": f"#/components/schemas/{model}"}, path
        assert {"400", "404", "409"} <= set(operation["responses"]), path
    assert "204" in operations[("delete", account)]["responses"]

    schemas = spec["components"]["schemas"]
    bank_account_in = schemas["BankAccountIn"]
    assert set(bank_account_in["required"]) == {
        "account_type",
        "account_name",
        "account_number",
        "branch_code",
        "country_code",
    }
    for platform_set in ("account_id", "is_default", "default_accounts", "status"):
        assert platform_set not in bank_account_in["properties"]
    assert set(schemas["UpdatedCount"]["properties"]) == {"updated"}
    assert set(schemas["BankAccountsResponse"]["properties"]) == {
        "office_accounts",
        "trust_accounts",
    }


def test_money_patterns_take_only_ascii_digits(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    amount = schemas["InvoiceIn"]["properties"]["amount"]["pattern"]
    (tax_rate,) = (
        choice["pattern"]
        for choice in schemas["LineItemIn"]["properties"]["tax_rate"]["anyOf"]
        if "pattern" in choice
    )
    for pattern, example in ((amount, "123.45"), (tax_rate, "12.5")):
        assert re.fullmatch(pattern, example), pattern
        assert not re.fullmatch(pattern, fullwidth(example)), pattern


def test_errors_are_documented_as_problems_never_as_422(spec: dict[str, Any]) -> None:
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "error_context"} <= set(problem["properties"])
    for key, operation in partner_operations(spec).items():
        assert "422" not in operation["responses"], key
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    create = spec["paths"][f"{API}/invoices"]["post"]["responses"]
    assert {"400", "401", "404", "409"} <= set(create)


def test_docs_page_is_html(anonymous: httpx.Client) -> None:
    response = anonymous.get("/docs")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in response.text


def test_healthz(anonymous: httpx.Client) -> None:
    response = anonymous.get("/healthz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok"}
