"""Card testing on the public payment call: attempts per address and per invoice, and a
cooling-off for an invoice whose cards are declined again and again.

Each test runs servers of its own, with limits small enough to reach in a few requests
and windows long enough that no token comes back while it runs; a cooling-off is ended by
ageing the declines in the database, not by waiting.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import select

from partnerpay.db import Database
from partnerpay.payments.models import Payment
from tests.support import Firm, Server, assert_problem
from tests.test_payments import DECLINED_CARD, card, events, fetch, new_invoice, pay

DECLINES_WINDOW_S = 900
DECLINES = {
    "PARTNERPAY_CARD_DECLINES_LIMIT": "3",
    "PARTNERPAY_CARD_DECLINES_WINDOW": str(DECLINES_WINDOW_S),
    "PARTNERPAY_RUN_DISPATCHER": "false",
}
ATTEMPTS = {
    "PARTNERPAY_PAYMENT_ATTEMPTS_PER_ADDRESS": "6",
    "PARTNERPAY_PAYMENT_ATTEMPTS_PER_INVOICE": "3",
    "PARTNERPAY_PAYMENT_ATTEMPTS_WINDOW": "3600",
    "PARTNERPAY_CARD_DECLINES_LIMIT": "0",
    "PARTNERPAY_RUN_DISPATCHER": "false",
}


@contextmanager
def payer(database_url: str, log: Path, env: dict[str, str]) -> Iterator[httpx.Client]:
    """An anonymous client of a server of its own, started with ``env``."""
    with (
        Server.start(database_url, log, env=env) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as http,
    ):
        yield http


def retry_after(response: httpx.Response, at_most: int) -> int:
    seconds = int(response.headers["retry-after"])
    assert 1 <= seconds <= at_most, response.headers
    return seconds


def test_payment_attempts_are_limited_per_invoice_and_per_address(
    client: httpx.Client, firm: Firm, database_url: str, tmp_path: Path
) -> None:
    first, second = new_invoice(client, firm), new_invoice(client, firm)
    with payer(database_url, tmp_path / "server.log", ATTEMPTS) as anonymous:
        for _ in range(3):
            assert pay(anonymous, first["invoice_id"], amount="1.00").status_code == 200
        on_invoice = pay(anonymous, first["invoice_id"], amount="1.00")
        assert "on one invoice" in assert_problem(on_invoice, 429, "rate_limited")["detail"]
        retry_after(on_invoice, 3600)

        for _ in range(2):  # this invoice has attempts left, but the address has not
            assert pay(anonymous, second["invoice_id"], amount="1.00").status_code == 200
        from_address = pay(anonymous, second["invoice_id"], amount="1.00")
        assert "from one address" in assert_problem(from_address, 429, "rate_limited")["detail"]
        retry_after(from_address, 3600)
    assert len(fetch(client, first["invoice_id"])["payments"]) == 3
    assert len(fetch(client, second["invoice_id"])["payments"]) == 2


def test_repeated_declines_stop_cards_on_the_invoice_on_every_server(
    client: httpx.Client, firm: Firm, database_url: str, tmp_path: Path
) -> None:
    invoice, other = new_invoice(client, firm), new_invoice(client, firm)
    with payer(database_url, tmp_path / "one.log", DECLINES) as anonymous:
        for attempt in range(3):
            declined = pay(
                anonymous, invoice["invoice_id"], f"d{attempt}", card=card(DECLINED_CARD)
            )
            assert declined.status_code == 402, declined.text
        replayed = pay(anonymous, invoice["invoice_id"], "d0", card=card(DECLINED_CARD))
        assert (replayed.status_code, replayed.json()["type"]) == (402, "card_declined")

    with payer(database_url, tmp_path / "two.log", DECLINES) as elsewhere:
        for number in (DECLINED_CARD, "4242 4242 4242 4242"):
            refused = pay(elsewhere, invoice["invoice_id"], card=card(number))
            problem = assert_problem(refused, 429, "too_many_declines")
            assert "another method" in problem["detail"]
            retry_after(refused, DECLINES_WINDOW_S)
        account = {"account_name": "Frank", "bsb": "062-000", "account_number": "12345678"}
        debit = pay(
            elsewhere, invoice["invoice_id"], method="DirectDebit", card=None, direct_debit=account
        )
        assert debit.status_code == 200, debit.text
        assert pay(elsewhere, other["invoice_id"]).status_code == 200

    failed = events(client, "payment.failed")
    assert [event["invoice_id"] for event in failed] == [invoice["invoice_id"]] * 3


def test_cards_are_taken_again_once_the_declines_are_older_than_the_window(
    client: httpx.Client, firm: Firm, database_url: str, database: Database, tmp_path: Path
) -> None:
    invoice = new_invoice(client, firm)
    with payer(database_url, tmp_path / "server.log", DECLINES) as anonymous:
        for _ in range(3):
            assert (
                pay(anonymous, invoice["invoice_id"], card=card(DECLINED_CARD)).status_code == 402
            )
        assert_problem(pay(anonymous, invoice["invoice_id"]), 429, "too_many_declines")

        with database.session() as session:
            declines = session.scalars(
                select(Payment).where(Payment.artifact_id == uuid.UUID(invoice["invoice_id"]))
            ).all()
            oldest = min(declines, key=lambda payment: payment.created_at)
            oldest.created_at -= timedelta(seconds=DECLINES_WINDOW_S)
            session.commit()
        paid = pay(anonymous, invoice["invoice_id"])
        assert paid.status_code == 200, paid.text
    assert fetch(client, invoice["invoice_id"])["status"] == "Paid"
