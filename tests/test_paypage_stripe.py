"""The payment page in Stripe mode, in a real headless browser: the card is typed into
Stripe Elements (localstripe's Stripe.js, served by the emulator) and goes from the browser
to Stripe alone; partnerpay is sent the PaymentMethod's id. Checked: a decline then a
payment, 3-D Secure, the keyboard, the 375 px layout, the surcharge line, the receipt, the
Content-Security-Policy, and that no card number reached partnerpay's requests, database or
log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, expect
from sqlalchemy import text

from partnerpay.db import Database
from partnerpay.firms.models import Firm as FirmRow
from tests.stripe_emulator import StripeEmulator
from tests.support import API, Firm, Partner, Server, create_firm, invoice_body

SUCCESS_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
AUTHENTICATED_CARD = "4000002760003184"
PHONE = {"width": 375, "height": 812}
# Every table a card number could have reached, read back as text.
TABLES = ("payments", "invoices", "webhook_events", "processor_events", "job_schedules")


@dataclass
class Traffic:
    """What the browser sent: to partnerpay (each request's URL and body), and elsewhere."""

    to_partnerpay: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)


@pytest.fixture
def connected_firm(database: Database, partner: Partner) -> Firm:
    firm = create_firm(database, partner, trust_account=True, connected=True)
    with database.unit_of_work() as session:  # the payer bears a 1.5% card surcharge
        row = session.get_one(FirmRow, firm.id)
        row.surcharge_enabled, row.surcharge_percent = True, "1.5"
    return firm


def watch(page: Page, server: Server, emulator: StripeEmulator) -> Traffic:
    traffic = Traffic()

    def seen(request: Request) -> None:
        if request.url.startswith(server.base_url):
            traffic.to_partnerpay.append(f"{request.url} {request.post_data or ''}")
        elif not request.url.startswith((emulator.base_url, "data:")):
            traffic.elsewhere.append(request.url)

    page.on("request", seen)
    return traffic


@pytest.fixture
def stripe_page(
    browser: Browser, stripe_server: Server, stripe_emulator: StripeEmulator
) -> Iterator[tuple[Page, Traffic]]:
    context = browser.new_context(viewport={"width": 1024, "height": 900})
    opened = context.new_page()
    traffic = watch(opened, stripe_server, stripe_emulator)
    yield opened, traffic
    context.close()
    assert traffic.elsewhere == [], "the page loads nothing but partnerpay's and Stripe's"


def create(client: httpx.Client, firm: Firm) -> dict[str, Any]:
    response = client.post(f"{API}/invoices", json=invoice_body(firm))
    assert response.status_code == 200, response.text
    invoice: dict[str, Any] = response.json()["invoice"]
    return invoice


def card_field(page: Page, name: str) -> Any:
    """A field of localstripe's card element (real Stripe Elements has its own, framed)."""
    return page.locator(f"#card-element input[placeholder={name}]")


def fill_card(page: Page, number: str) -> None:
    page.get_by_label("Name on card").fill("Frank Herman")
    card_field(page, "number").fill(number)
    card_field(page, "exp_month").fill("12")
    card_field(page, "exp_year").fill("30")
    card_field(page, "cvc").fill("123")
    card_field(page, "postal_code").fill("2000")


def status_of(client: httpx.Client, invoice_id: str) -> str:
    status: str = client.get(f"{API}/invoices/{invoice_id}").json()["invoice"]["status"]
    return status


def assert_no_card_number_reached_partnerpay(
    traffic: Traffic, database: Database, server: Server, *numbers: str
) -> None:
    with database.session(read_only=True) as session:
        stored = json.dumps(
            [
                [str(value) for value in row]
                for table in TABLES
                for row in session.execute(text(f"SELECT * FROM {table}"))
            ]
        )
    log = server.log.read_text()
    for number in numbers:
        for spaced in (number, " ".join(number[i : i + 4] for i in range(0, 16, 4))):
            assert not [r for r in traffic.to_partnerpay if spaced in r]
            assert spaced not in stored
            assert spaced not in log


def test_a_declined_card_then_a_paid_one_in_stripe_elements(
    stripe_page: tuple[Page, Traffic],
    stripe_client: httpx.Client,
    stripe_server: Server,
    stripe_emulator: StripeEmulator,
    connected_firm: Firm,
    database: Database,
) -> None:
    page, traffic = stripe_page
    invoice = create(stripe_client, connected_firm)
    response = page.goto(invoice["payment_uri"])
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert f"script-src 'self' {stripe_emulator.base_url};" in policy
    assert f"frame-src {stripe_emulator.base_url};" in policy
    assert f"connect-src 'self' {stripe_emulator.base_url};" in policy
    assert "unsafe" not in policy
    expect(page.get_by_test_id("surcharge")).to_contain_text("1.5%")
    expect(page.get_by_label("Card number")).to_have_count(0)  # no card field of ours

    fill_card(page, DECLINED_CARD)
    page.get_by_role("button", name="Pay $125.30").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("declined")
    expect(page.get_by_role("button", name="Pay $125.30")).to_be_enabled()
    assert status_of(stripe_client, invoice["invoice_id"]) == "Submitted"

    card_field(page, "number").fill(SUCCESS_CARD)
    page.get_by_role("button", name="Pay $125.30").click()
    receipt = page.get_by_test_id("receipt")
    expect(receipt).to_contain_text("$125.30")
    expect(page.locator("main")).to_contain_text("$1.85")  # the surcharge
    expect(page.get_by_text("Visa •••• 4242")).to_be_visible()
    assert status_of(stripe_client, invoice["invoice_id"]) == "Paid"
    assert_no_card_number_reached_partnerpay(
        traffic, database, stripe_server, SUCCESS_CARD, DECLINED_CARD
    )


def test_3d_secure_in_stripe_elements(
    stripe_page: tuple[Page, Traffic],
    stripe_client: httpx.Client,
    connected_firm: Firm,
) -> None:
    page, _traffic = stripe_page
    invoice = create(stripe_client, connected_firm)
    page.goto(invoice["payment_uri"])
    fill_card(page, AUTHENTICATED_CARD)
    page.get_by_role("button", name="Pay $125.30").click()
    # The emulator's Stripe.js asks twice: when the card is set up, and for the payment.
    for _ in range(2):
        page.get_by_role("button", name="Complete authentication").click()
    expect(page.get_by_test_id("receipt")).to_be_visible()
    assert status_of(stripe_client, invoice["invoice_id"]) == "Paid"


def test_pay_in_stripe_elements_by_keyboard_on_a_phone(
    browser: Browser,
    stripe_client: httpx.Client,
    stripe_server: Server,
    stripe_emulator: StripeEmulator,
    connected_firm: Firm,
) -> None:
    invoice = create(stripe_client, connected_firm)
    context = browser.new_context(viewport=PHONE, device_scale_factor=2)
    page = context.new_page()
    traffic = watch(page, stripe_server, stripe_emulator)
    page.goto(invoice["payment_uri"])
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.keyboard.press("Tab")
    expect(page.get_by_role("radio", name="Card")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.type("Frank Herman")
    page.keyboard.press("Tab")
    expect(card_field(page, "number")).to_be_focused()
    # Stripe's card element moves on to the next of its fields by itself.
    for value in (SUCCESS_CARD, "12", "30", "123"):
        page.keyboard.type(value)
    expect(card_field(page, "postal_code")).to_be_focused()
    page.keyboard.type("2000")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Pay $125.30")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("receipt")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert status_of(stripe_client, invoice["invoice_id"]) == "Paid"
    assert traffic.elsewhere == []
    context.close()
