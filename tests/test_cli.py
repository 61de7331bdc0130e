"""The operator's ``partnerpay`` command, run as a real subprocess against the test database."""

import json
import os
import subprocess
import sys
import uuid
from typing import Any

import httpx
import pytest

from tests.support import (
    API,
    Firm,
    Partner,
    Server,
    arabic_indic,
    assert_problem,
    create_invoice,
    fullwidth,
    invoice_body,
    partner_client,
)


def run_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "partnerpay", *args],
        env={**os.environ, "PARTNERPAY_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def run_ok(database_url: str, *args: str) -> str:
    completed = run_cli(database_url, *args)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


def run_json(database_url: str, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(run_ok(database_url, *args, "--json"))
    return result


def cli_partner(database_url: str) -> Partner:
    issued = run_json(database_url, "admin", "create-partner", "--name", "Acme PMS")
    return Partner(id=uuid.UUID(issued["channel_partner_id"]), api_key=issued["api_key"])


def read_firm(http: httpx.Client, firm_id: str) -> dict[str, Any]:
    response = http.get(f"{API}/firms/{firm_id}")
    assert response.status_code == 200, response.text
    firm: dict[str, Any] = response.json()["firm"]
    return firm


def test_create_partner_gives_credentials_that_work(database_url: str, server: Server) -> None:
    issued = run_json(database_url, "admin", "create-partner", "--name", "Acme PMS")
    assert set(issued) == {"channel_partner_id", "api_key"}
    partner = Partner(id=uuid.UUID(issued["channel_partner_id"]), api_key=issued["api_key"])

    with partner_client(server, partner) as http:
        response = http.get(f"{API}/firms")
    assert response.status_code == 200, response.text
    assert response.json()["firms"] == []
    wrong = Partner(id=partner.id, api_key=partner.api_key[:-1])
    with partner_client(server, wrong) as http:
        assert_problem(http.get(f"{API}/firms"), 401, "unauthorized")


def test_create_partner_without_json_prints_lines(database_url: str) -> None:
    output = run_ok(database_url, "admin", "create-partner", "--name", "Plain PMS")
    lines = dict(line.split(": ", 1) for line in output.strip().splitlines())
    assert set(lines) == {"channel_partner_id", "api_key"}
    uuid.UUID(lines["channel_partner_id"])


def test_create_firm_makes_an_active_firm_with_accounts(database_url: str, server: Server) -> None:
    partner = cli_partner(database_url)
    firm = run_json(
        database_url,
        "admin",
        "create-firm",
        "--partner-id",
        str(partner.id),
        "--trading-name",
        "Smith Legal",
        "--legal-name",
        "Smith Legal Pty Ltd",
        "--external-id",
        "smith-1",
        "--trust-account",
    )
    assert firm["status"] == "Active"
    assert firm["trading_name"] == "Smith Legal"
    assert firm["legal_name"] == "Smith Legal Pty Ltd"
    assert firm["external_id"] == "smith-1"
    assert firm["currency"] == "AUD"
    assert firm["office_account"]["account_id"] != firm["trust_account"]["account_id"]

    # The operator sees the whole account numbers; the partner sees them masked.
    assert firm["office_account"]["account_number"] == "000000001"
    masked = {
        kind: {**firm[kind], "account_number": "******001"}
        for kind in ("office_account", "trust_account")
    }
    with partner_client(server, partner) as http:
        assert read_firm(http, firm["firm_id"]) == {**firm, **masked}
        body = invoice_body(Firm(id=uuid.UUID(firm["firm_id"]), partner=partner))
        invoice = create_invoice(http, {**body, "settlement_account": "Trust"})
    assert invoice["settlement_account_id"] == firm["trust_account"]["account_id"]


def test_create_firm_takes_an_id_and_currency(database_url: str) -> None:
    partner = cli_partner(database_url)
    firm_id = str(uuid.uuid4())
    firm = run_json(
        database_url,
        "admin",
        "create-firm",
        "--partner-id",
        str(partner.id),
        "--trading-name",
        "Kiwi Law",
        "--firm-id",
        firm_id,
        "--currency",
        "NZD",
    )
    assert firm["firm_id"] == firm_id
    assert firm["currency"] == "NZD"
    assert "trust_account" not in firm


def test_a_pending_firm_becomes_active(database_url: str, server: Server) -> None:
    partner = cli_partner(database_url)
    firm = run_json(
        database_url,
        "admin",
        "create-firm",
        "--partner-id",
        str(partner.id),
        "--trading-name",
        "Later Legal",
        "--status",
        "Pending",
    )
    assert firm["status"] == "Pending"
    body = invoice_body(Firm(id=uuid.UUID(firm["firm_id"]), partner=partner))

    with partner_client(server, partner) as http:
        assert_problem(http.post(f"{API}/invoices", json=body), 409, "firm_not_active")
        output = run_ok(database_url, "admin", "set-firm-status", firm["firm_id"], "Active")
        assert firm["firm_id"] in output
        assert "Active" in output
        moved = read_firm(http, firm["firm_id"])
        assert moved["status"] == "Active"
        assert moved["updated_at"] >= firm["updated_at"]
        assert create_invoice(http, body)["status"] == "Submitted"


def test_a_firm_without_office_account_cannot_become_active(
    database_url: str, server: Server
) -> None:
    partner = cli_partner(database_url)
    with partner_client(server, partner) as http:
        response = http.post(f"{API}/firms", json={"trading_name": "No Bank Yet"})
        assert response.status_code == 200, response.text
        firm_id = response.json()["firm"]["firm_id"]

        completed = run_cli(database_url, "admin", "set-firm-status", firm_id, "Active")
        assert completed.returncode != 0
        assert "Office account" in completed.stderr
        assert read_firm(http, firm_id)["status"] == "Pending"


@pytest.mark.parametrize("firm_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_set_status_of_an_unknown_firm_fails_with_a_message(
    database_url: str, firm_id: str
) -> None:
    completed = run_cli(database_url, "admin", "set-firm-status", firm_id, "Active")
    assert completed.returncode != 0
    assert firm_id in completed.stderr
    assert "Traceback" not in completed.stderr


def test_create_firm_for_an_unknown_partner_fails_with_a_message(database_url: str) -> None:
    partner_id = str(uuid.uuid4())
    completed = run_cli(
        database_url, "admin", "create-firm", "--partner-id", partner_id, "--trading-name", "X"
    )
    assert completed.returncode != 0
    assert partner_id in completed.stderr
    assert "Traceback" not in completed.stderr


def test_set_status_rejects_an_unknown_status(database_url: str) -> None:
    partner = cli_partner(database_url)
    firm = run_json(
        database_url, "admin", "create-firm", "--partner-id", str(partner.id), "--trading-name", "Y"
    )
    completed = run_cli(database_url, "admin", "set-firm-status", firm["firm_id"], "Sleeping")
    assert completed.returncode != 0
    assert "Sleeping" in completed.stderr


def test_db_upgrade_is_idempotent(database_url: str) -> None:
    for _ in range(2):
        assert "up to date" in run_ok(database_url, "db", "upgrade")


def test_create_firm_with_a_surcharge(database_url: str) -> None:
    partner = cli_partner(database_url)
    firm = run_json(
        database_url,
        *("admin", "create-firm", "--partner-id", str(partner.id), "--trading-name", "Surcharged"),
        *("--surcharge-percent", "1.5", "--json"),
    )
    assert (firm["surcharge_enabled"], firm["surcharge_percent"]) == (True, "1.5")

    for bad in ("150", fullwidth("1.5"), arabic_indic("2")):
        refused = run_cli(
            database_url,
            *("admin", "create-firm", "--partner-id", str(partner.id), "--trading-name", "Bad"),
            *("--surcharge-percent", bad),
        )
        assert refused.returncode == 1, bad
        assert "surcharge_percent" in refused.stderr
