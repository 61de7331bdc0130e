"""The firm's money after payment, as a bookkeeper checks it: fees, the ledger, payouts to
Office and Trust, transactions, and what each invoice shows as paid out. Payments are made
on the payment page (card and direct debit, on the sandbox gateway), payouts by the
operator's `admin run-payouts`, and the books are checked by `admin verify-ledger`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from partnerpay.artifacts.models import PaymentMethod
from partnerpay.config import Settings
from partnerpay.db import Database
from partnerpay.firms.models import AccountType, SettlementAccount
from partnerpay.firms.models import Firm as FirmRow
from partnerpay.ledger.models import Payout
from partnerpay.ledger.pricing import set_firm_pricing
from partnerpay.ledger.service import pending
from partnerpay.payouts import service as payouts
from partnerpay.payouts.bankfiles import read_aba, read_payouts_csv
from partnerpay.payouts.verification import verify_ledger
from tests.support import (
    API,
    Firm,
    Partner,
    Server,
    assert_problem,
    create_firm,
    create_partner,
    partner_client,
    wait_until,
)
from tests.test_payments import card, events, fetch, new_invoice, pay, settle_payments
from tests.test_refunds import refund

DECLINED_CARD = "4000000000000002"
DEBIT_ACCOUNT = {"account_name": "Frank", "bsb": "062-000", "account_number": "12345678"}


def admin(server: Server, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``partnerpay admin ...`` with the server's settings."""
    env = {"PARTNERPAY_DATABASE_URL": database_url, "PARTNERPAY_PUBLIC_BASE_URL": server.base_url}
    return subprocess.run(
        [sys.executable, "-m", "partnerpay", "admin", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )


def run_payouts(server: Server, database_url: str, firm: Firm) -> list[dict[str, str]]:
    ran = admin(server, database_url, "run-payouts", "--firm-id", str(firm.id), "--json")
    assert ran.returncode == 0, ran.stderr
    made: list[dict[str, str]] = json.loads(ran.stdout)["payouts"]
    return made


def priced_firm(database: Database, partner: Partner) -> Firm:
    """A firm with Office and Trust accounts, a 1.5% card surcharge borne by the payer,
    and the platform's prices: cards 1.75% + 0.30, direct debits 0.5%."""
    firm = create_firm(database, partner, trust_account=True)
    with database.unit_of_work() as session:
        row = session.get_one(FirmRow, firm.id)
        row.surcharge_enabled, row.surcharge_percent = True, "1.5"
        set_firm_pricing(session, firm.id, PaymentMethod.CARD, "1.75", "0.30")
        set_firm_pricing(session, firm.id, PaymentMethod.DIRECT_DEBIT, "0.5", "0")
    return firm


def account_id(database: Database, firm: Firm, account_type: AccountType) -> str:
    with database.session() as session:
        account = session.get_one(FirmRow, firm.id).account(account_type)
        assert account is not None
        return str(account.id)


def by_account(made: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {payout["account_id"]: payout for payout in made}


def transactions(client: httpx.Client, firm: Firm, version: int = 4) -> list[dict[str, Any]]:
    path = f"/api/v{version}/partner/firms/{firm.id}/transactions"
    response = client.get(path, params={"page_size": 100})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["transactions"]
    return found


def cents(amount: str) -> int:
    return int(Decimal(amount) * 100)


def test_a_bookkeepers_month_adds_up_to_the_cent(
    client: httpx.Client,
    anonymous: httpx.Client,
    partner: Partner,
    database: Database,
    server: Server,
    database_url: str,
) -> None:
    firm = priced_firm(database, partner)
    office, trust = (account_id(database, firm, t) for t in (AccountType.OFFICE, AccountType.TRUST))

    office_invoice = new_invoice(client, firm, amount="100.00")
    by_card = pay(anonymous, office_invoice["invoice_id"]).json()["payment"]
    assert (by_card["surcharge"], by_card["total_charged"]) == ("1.50", "101.50")
    trust_card = new_invoice(client, firm, amount="50.00", settlement_account="Trust")
    assert pay(anonymous, trust_card["invoice_id"]).status_code == 200
    trust_debit = new_invoice(client, firm, amount="200.00", settlement_account="Trust")
    debit = pay(
        anonymous,
        trust_debit["invoice_id"],
        method="DirectDebit",
        card=None,
        direct_debit=DEBIT_ACCOUNT,
    )
    assert debit.status_code == 200, debit.text
    # A direct debit still clearing is not money received yet.
    assert {t["amount"]: t["status"] for t in transactions(client, firm)}["200.00"] == "Clearing"
    settle_payments(server, database_url)
    assert refund(client, by_card["payment_id"], "30.00").status_code == 201

    made = by_account(run_payouts(server, database_url, firm))

    # Fees: card 1.75% of 101.50 = 1.77625 -> 1.78, + 0.30 = 2.08; of 50.75 -> 0.89 + 0.30
    # = 1.19; the direct debit 0.5% of 200.00 = 1.00. The refund of 30.00 takes 0.45 of
    # the surcharge back with it. Trust is paid everything it received, fees never taken
    # from it; the Office account gets the surcharges and pays every fee.
    assert (made[trust]["payout_total"], made[trust]["currency"]) == ("250.00", "AUD")
    office_total = Decimal("100.00") + Decimal("1.50") - Decimal("2.08") - Decimal("30.45")
    office_total += Decimal("0.75") - Decimal("1.19") - Decimal("1.00")
    assert made[office]["payout_total"] == str(office_total) == "67.53"

    # The payouts endpoints show the same, each payout its transactions' paid_out summed.
    listed = client.get(f"{API}/firms/{firm.id}/payouts").json()
    assert listed["pagination_metadata"]["total_records"] == 2
    for payout in listed["payouts"]:
        paid_out = sum(cents(t["paid_out"]) for t in payout["transactions"])
        assert paid_out == cents(payout["payout_total"])
        assert payout["status"] == "Submitted"
        assert payout["account"]["account_number"].startswith("*")
        assert len(payout["payout_reference"]) <= 18
    trust_payout = next(p for p in listed["payouts"] if p["account"]["account_type"] == "Trust")
    assert sorted(t["paid_out"] for t in trust_payout["transactions"]) == ["200.00", "50.00"]

    # Each invoice's paid_out is what its payment brought the firm, over every account.
    paid_out = {
        invoice["invoice_id"]: fetch(client, invoice["invoice_id"])["payments"][0]["paid_out"]
        for invoice in (office_invoice, trust_card, trust_debit)
    }
    assert paid_out == {
        office_invoice["invoice_id"]: "68.97",  # 101.50 - 2.08 - 30.45
        trust_card["invoice_id"]: "49.56",  # 50.75 - 1.19
        trust_debit["invoice_id"]: "199.00",  # 200.00 - 1.00
    }
    assert sum(cents(v) for v in paid_out.values()) == cents("250.00") + cents("67.53")

    # The transactions add up to what clients were charged, each naming its payout.
    found = transactions(client, firm)
    assert sorted(t["amount"] for t in found) == ["101.50", "200.00", "50.75"]
    assert {t["status"] for t in found} == {"Paid"}
    assert {t["payout_id"] for t in found if t["account_type"] == "Trust"} == {
        made[trust]["payout_id"]
    }
    assert {t["account_type"] for t in found} == {"Office", "Trust"}
    card_row = next(t for t in found if t["amount"] == "101.50")
    assert (card_row["surcharged_amount"], card_row["fee"], card_row["refundable"]) == (
        "1.50",
        "2.08",
        True,
    )
    assert card_row["customer_payment_method"] == {
        "scheme": "Visa",
        "scheme_partial_number": "4242",
    }

    # Nothing is left to pay out, and the books balance.
    assert run_payouts(server, database_url, firm) == []
    verified = admin(server, database_url, "verify-ledger", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    books = {b["account_id"]: b for b in json.loads(verified.stdout)["accounts"]}
    assert (books[trust]["received"], books[trust]["paid_out"], books[trust]["pending"]) == (
        25000,
        25000,
        0,
    )
    assert books[office]["paid_out"] == 6753


def test_a_payout_is_reported_and_marked_paid_by_the_operator(
    client: httpx.Client,
    anonymous: httpx.Client,
    partner: Partner,
    database: Database,
    server: Server,
    database_url: str,
) -> None:
    firm = priced_firm(database, partner)
    invoice = new_invoice(client, firm, amount="10.00")
    assert pay(anonymous, invoice["invoice_id"]).status_code == 200
    (made,) = run_payouts(server, database_url, firm)

    (created,) = [
        e for e in events(client, "payout.created") if e["payout_id"] == made["payout_id"]
    ]
    assert (created["status"], created["payout_total"]) == ("Submitted", made["payout_total"])
    updated = [
        e for e in events(client, "invoice.updated") if e["invoice_id"] == invoice["invoice_id"]
    ]
    assert updated[-1]["payments"][0]["paid_out"] == made["payout_total"]

    marked = admin(server, database_url, "set-payout-status", made["payout_id"], "Paid")
    assert marked.returncode == 0, marked.stderr
    (paid,) = [e for e in events(client, "payout.updated") if e["payout_id"] == made["payout_id"]]
    assert paid["status"] == "Paid"
    refused = admin(server, database_url, "set-payout-status", made["payout_id"], "Cancelled")
    assert refused.returncode == 1
    assert "Paid only" in refused.stderr
    since = "2000-01-01T00:00:00.000Z"
    for path in ("/payouts", f"/payouts/firms/{firm.id}"):
        listed = client.get(f"{API}{path}", params={"since": since}).json()["payouts"]
        assert [p["status"] for p in listed if p["payout_id"] == made["payout_id"]] == ["Paid"]


def test_a_negative_office_balance_is_carried_forward_and_never_taken_from_trust(
    client: httpx.Client,
    anonymous: httpx.Client,
    partner: Partner,
    database: Database,
    server: Server,
    database_url: str,
) -> None:
    firm = priced_firm(database, partner)
    office, trust = (account_id(database, firm, t) for t in (AccountType.OFFICE, AccountType.TRUST))
    invoice = new_invoice(
        client,
        firm,
        amount="10.00",
        settlement_account="Trust",
        surcharge_choice_override="Merchant",
    )
    assert pay(anonymous, invoice["invoice_id"]).status_code == 200
    # Office received nothing and owes the fee (1.75% of 10.00 -> 0.18, + 0.30 = 0.48).
    made = by_account(run_payouts(server, database_url, firm))
    assert list(made) == [trust]
    assert made[trust]["payout_total"] == "10.00"

    office_invoice = new_invoice(client, firm, amount="1.00", surcharge_choice_override="Merchant")
    assert pay(anonymous, office_invoice["invoice_id"]).status_code == 200
    # 1.00 less its own fee of 0.32 (0.02 + 0.30) and the 0.48 carried: 0.20.
    made = by_account(run_payouts(server, database_url, firm))
    assert list(made) == [office]
    assert made[office]["payout_total"] == "0.20"


def test_racing_payout_runs_never_pay_an_entry_out_twice(
    client: httpx.Client,
    anonymous: httpx.Client,
    partner: Partner,
    database: Database,
    database_url: str,
) -> None:
    firm = priced_firm(database, partner)
    for amount in ("11.00", "12.00", "13.00"):
        invoice = new_invoice(client, firm, amount=amount, settlement_account="Trust")
        assert pay(anonymous, invoice["invoice_id"]).status_code == 200
    settings = Settings(database_url=database_url)
    made: list[list[Any]] = []
    start = threading.Barrier(4)

    def run() -> None:
        start.wait()
        made.append(payouts.run_payouts(database, settings, firm.id))

    runners = [threading.Thread(target=run) for _ in range(4)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    # One trust payout of all three; the Office account, which owes more in fees than it
    # received in surcharges, none.
    assert len(made) == 4
    assert sorted(p.total_minor for batch in made for p in batch) == [3600]
    with database.session() as session:
        assert verify_ledger(session).problems == []


def test_transactions_filter_sort_and_page_as_feewise_does(
    client: httpx.Client, anonymous: httpx.Client, partner: Partner, database: Database
) -> None:
    firm = priced_firm(database, partner)
    for amount in ("1.00", "2.00", "3.00"):
        assert (
            pay(anonymous, new_invoice(client, firm, amount=amount)["invoice_id"]).status_code
            == 200
        )
    declined = new_invoice(client, firm, amount="4.00")
    assert pay(anonymous, declined["invoice_id"], card=card(DECLINED_CARD)).status_code == 402
    path = f"/api/v4/partner/firms/{firm.id}/transactions"

    first = client.get(path, params={"page_size": 2, "sort_by": "amount", "order": "asc"}).json()
    assert [t["amount"] for t in first["transactions"]] == ["1.02", "2.03"]
    meta = first["pagination_metadata"]
    assert (meta["total_records"], meta["total_pages"], meta["current_page_end_index"]) == (4, 2, 2)
    second = client.get(
        path, params={"page_size": 2, "page": 2, "sort_by": "amount", "order": "asc"}
    ).json()
    assert [t["status"] for t in second["transactions"]] == ["Paid", "Failed"]
    failed = client.get(path, params={"status_filter": "Failed"}).json()["transactions"]
    assert [t["reference"] for t in failed] == [declined["external_id"]]

    (one,) = client.get(path, params={"status_filter": "Paid", "page_size": 1}).json()[
        "transactions"
    ]
    for wanted in (one["transaction_id"], one["payment_reference"]):
        read = client.get(f"{API}/transactions/{wanted}")
        assert read.status_code == 200, read.text
        assert (read.json()["firm_id"], read.json()["transaction"]["amount"]) == (
            str(firm.id),
            one["amount"],
        )

    for params, field in (
        ({"status_filter": "Paid,Settled"}, "status_filter"),
        ({"sort_by": "colour"}, "sort_by"),
        ({"account_id_filter": "nope"}, "account_id_filter"),
        ({"from": "2030-01-01T00:00:00Z", "to": "2020-01-01T00:00:00Z"}, "from"),
    ):
        assert_problem(client.get(path, params=params), 400, "validation_error", field=field)


def test_another_partners_firm_transaction_and_payouts_are_not_found(
    client: httpx.Client,
    anonymous: httpx.Client,
    partner: Partner,
    database: Database,
    server: Server,
) -> None:
    firm = priced_firm(database, partner)
    assert pay(anonymous, new_invoice(client, firm, amount="5.00")["invoice_id"]).status_code == 200
    (one,) = transactions(client, firm)
    with partner_client(server, create_partner(database)) as stranger:
        for path in (
            f"{API}/firms/{firm.id}/transactions",
            f"/api/v4/partner/firms/{firm.id}/transactions",
            f"{API}/transactions/{one['transaction_id']}",
            f"{API}/firms/{firm.id}/payouts",
            f"{API}/payouts/firms/{firm.id}",
            f"{API}/transactions/{uuid.uuid4()}",
        ):
            assert_problem(stranger.get(path), 404, "not_found")
        assert stranger.get(f"{API}/payouts").json() == {"payouts": []}


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--method", "Card", "--percent", "101"], "percent"),
        (["--method", "Card", "--percent", "1", "--fixed", "-1"], "fixed"),
        (["--method", "Card", "--percent", "1", "--fixed", "0.001"], "fixed"),
    ],
)
def test_pricing_refuses_what_is_not_a_price(
    partner: Partner,
    database: Database,
    server: Server,
    database_url: str,
    args: list[str],
    field: str,
) -> None:
    firm = priced_firm(database, partner)
    priced = admin(server, database_url, "set-firm-pricing", str(firm.id), *args)
    assert priced.returncode == 1
    assert field in priced.stderr


def test_a_payout_run_killed_midway_leaves_no_half_payout_and_the_next_run_completes_it(
    client: httpx.Client,
    anonymous: httpx.Client,
    partner: Partner,
    database: Database,
    server: Server,
    database_url: str,
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("needs a row lock another connection waits on: PostgreSQL's")
    firm = priced_firm(database, partner)
    for settlement_account in ("Office", "Trust"):
        invoice = new_invoice(client, firm, amount="20.00", settlement_account=settlement_account)
        assert pay(anonymous, invoice["invoice_id"]).status_code == 200
    first, last = sorted(
        (account_id(database, firm, t) for t in (AccountType.OFFICE, AccountType.TRUST)),
        key=uuid.UUID,
    )
    with database.session() as session:
        owed = pending(session, uuid.UUID(last)).amount_minor
    with database.engine.connect() as holder:
        holder.execute(
            select(SettlementAccount.id)
            .where(SettlementAccount.id == uuid.UUID(last))
            .with_for_update()
        )
        env = {"PARTNERPAY_DATABASE_URL": database_url}
        run = subprocess.Popen(
            [sys.executable, "-m", "partnerpay", "admin", "run-payouts", "--firm-id", str(firm.id)],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: _waiting_for_a_lock(database), 30, "the run to wait on the lock")
            with database.session() as session:
                made = session.scalars(select(Payout).where(Payout.firm_id == firm.id)).all()
                assert [str(p.account_id) for p in made] == [first]
        finally:
            run.send_signal(signal.SIGKILL)
            run.wait()
        holder.rollback()

    with database.session() as session:
        assert verify_ledger(session).problems == []
        assert pending(session, uuid.UUID(last)).amount_minor == owed
    (completed,) = run_payouts(server, database_url, firm)
    assert (completed["account_id"], cents(completed["payout_total"])) == (last, owed)


def _waiting_for_a_lock(database: Database) -> bool:
    with database.session() as session:
        waiting = session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE '%settlement_accounts%FOR UPDATE%'"
            )
        )
        return bool(waiting)


def test_the_ledger_balances_after_payments_refunds_and_payout_runs_race(
    server: Server, partner: Partner, database: Database, database_url: str
) -> None:
    firm = priced_firm(database, partner)
    settings = Settings(database_url=database_url)
    with partner_client(server, partner) as client:
        invoices = [
            new_invoice(client, firm, amount="40.00", settlement_account=account)
            for account in ("Office", "Trust") * 3
        ]
    paid: list[str] = []
    failures: list[str] = []
    start = threading.Barrier(4)

    def payer(mine: list[dict[str, Any]]) -> None:
        with httpx.Client(base_url=server.base_url) as anonymous:
            start.wait()
            for invoice in mine:
                response = pay(anonymous, invoice["invoice_id"], amount="20.00")
                paid.append(response.json()["payment"]["payment_id"])
                pay(anonymous, invoice["invoice_id"], amount="20.00")

    def refunder() -> None:
        with partner_client(server, partner) as client:
            start.wait()
            while len(paid) < len(invoices):
                if paid:
                    response = refund(client, paid[0], "1.00")
                    if response.status_code not in (201, 400):
                        failures.append(response.text)

    def payout_runner() -> None:
        start.wait()
        while len(paid) < len(invoices):
            payouts.run_payouts(database, settings, firm.id)

    threads = [
        threading.Thread(target=payer, args=(invoices[:3],)),
        threading.Thread(target=payer, args=(invoices[3:],)),
        threading.Thread(target=refunder),
        threading.Thread(target=payout_runner),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    payouts.run_payouts(database, settings, firm.id)

    assert failures == []
    with database.session() as session:
        report = verify_ledger(session)
        assert report.problems == []
        books = [b for b in report.accounts if b.firm_id == firm.id]
        trust = next(b for b in books if b.account_type == "Trust")
        # Trust received 120.00, less what was refunded of its payments: the last run paid
        # out all of it but a balance a late refund left below zero (carried forward).
        assert trust.pending <= 0
        assert trust.paid_out == trust.received - trust.pending
        assert 12000 - 2000 <= trust.received <= 12000  # one 20.00 payment is refunded


def test_exported_bank_files_pay_each_payout_once_with_their_totals_right(
    client: httpx.Client,
    anonymous: httpx.Client,
    partner: Partner,
    database: Database,
    server: Server,
    database_url: str,
    tmp_path: Path,
) -> None:
    firm = priced_firm(database, partner)
    for settlement_account, currency in (("Office", "AUD"), ("Trust", "AUD"), ("Trust", "USD")):
        invoice = new_invoice(
            client, firm, amount="25.00", settlement_account=settlement_account, currency=currency
        )
        assert pay(anonymous, invoice["invoice_id"]).status_code == 200
    made = {p["payout_reference"]: p for p in run_payouts(server, database_url, firm)}
    assert sorted(p["currency"] for p in made.values()) == ["AUD", "AUD", "USD"]

    exported = admin(server, database_url, "export-payouts", "--output", str(tmp_path))
    assert exported.returncode == 0, exported.stderr
    (aba_path,) = tmp_path.glob("*-AUD.aba")
    aba = read_aba(aba_path.read_bytes().decode("ascii"))  # the reader checks the totals
    ours = {e.lodgement_reference: e for e in aba.entries if e.lodgement_reference in made}
    aud = {ref: p for ref, p in made.items() if p["currency"] == "AUD"}
    assert {ref: e.amount_minor for ref, e in ours.items()} == {
        ref: cents(p["payout_total"]) for ref, p in aud.items()
    }
    assert all(e.transaction_code == "50" for e in ours.values())
    assert aba.credit_total_minor == aba.debit_total_minor  # balanced by the remitter's debit
    (csv_path,) = tmp_path.glob("*-USD.csv")
    (usd,) = [
        line
        for line in read_payouts_csv(csv_path.read_text()).lines
        if line.payout_reference in made
    ]
    assert (usd.currency, usd.amount_minor) == ("USD", 2500)

    again = tmp_path / "again"
    assert admin(server, database_url, "export-payouts", "--output", str(again)).returncode == 0
    for path in again.iterdir():
        assert not any(ref in path.read_text() for ref in made), path


def test_an_account_with_money_not_yet_paid_out_is_not_deleted(
    client: httpx.Client,
    anonymous: httpx.Client,
    partner: Partner,
    database: Database,
    server: Server,
    database_url: str,
) -> None:
    firm = priced_firm(database, partner)
    trust = account_id(database, firm, AccountType.TRUST)
    invoice = new_invoice(client, firm, amount="15.00", settlement_account="Trust")
    assert pay(anonymous, invoice["invoice_id"]).status_code == 200

    path = f"{API}/firms/{firm.id}/accounts/{trust}"
    problem = assert_problem(client.delete(path), 409, "bank_account_in_use")
    assert "15.00" in problem["detail"]
    (made,) = run_payouts(server, database_url, firm)
    assert made["account_id"] == trust
    assert client.delete(path).status_code == 204
