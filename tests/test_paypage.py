"""The payment page in a real headless browser: Debian's chromium driven by Playwright.

Skipped when chromium is not installed, unless ``PARTNERPAY_REQUIRE_BROWSER=1`` (CI).
Screenshots of each state are taken; with ``PARTNERPAY_UPDATE_SCREENSHOTS=1`` they replace
the ones in ``docs/screenshots/`` that the README shows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.receiver import Receiver
from tests.support import API, GUIDE_INVOICE, Firm, Server, invoice_body

DOCS_SCREENSHOTS = Path(__file__).parent.parent / "docs" / "screenshots"
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1024, "height": 900}


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP)
    opened = context.new_page()
    outside: list[str] = []
    opened.on(
        "request",
        lambda request: (
            None
            if request.url.startswith((server.base_url, "data:"))
            else outside.append(request.url)
        ),
    )
    yield opened
    context.close()
    assert outside == [], "the page must not load anything from elsewhere"


def create(client: httpx.Client, firm: Firm, **overrides: Any) -> dict[str, Any]:
    body = invoice_body(firm, payment_methods_override=["Card", "DirectDebit"]) | overrides
    invoice: dict[str, Any] = client.post(f"{API}/invoices", json=body).json()["invoice"]
    return invoice


def fill_card(page: Page, number: str) -> None:
    page.get_by_label("Name on card").fill("Frank Herman")
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiry month").fill("12")
    page.get_by_label("Expiry year").fill("2099")
    page.get_by_label("Security code").fill("123")


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("PARTNERPAY_UPDATE_SCREENSHOTS") == "1":
        return DOCS_SCREENSHOTS
    return tmp_path_factory.mktemp("screenshots")


def shot(page: Page, folder: Path, name: str) -> None:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0


def status_of(client: httpx.Client, invoice_id: str) -> tuple[str, str, int]:
    invoice = client.get(f"{API}/invoices/{invoice_id}").json()["invoice"]
    return invoice["status"], invoice["amount_due"], len(invoice["payments"])


RIGHT_TO_LEFT_OVERRIDE = "\u202e"


def test_partner_text_is_shown_as_sent_but_isolated(
    client: httpx.Client, anonymous: httpx.Client, firm: Firm
) -> None:
    """A right-to-left override in a partner's text must not turn the page's own text
    around it: each such text is its own <bdi>, shown as sent."""
    name, description = f"Frank {RIGHT_TO_LEFT_OVERRIDE}gro.live", f"Fees{RIGHT_TO_LEFT_OVERRIDE}01"
    invoice = create(
        client, firm, debtor={"external_id": "d-1", "name": name}, description=description
    )
    html = anonymous.get(f"/pay/{invoice['invoice_id']}").text
    assert f"For <bdi>{name}</bdi>" in html
    assert f"<bdi>{description}</bdi>" in html
    assert html.count("<bdi>") >= 4  # the firm's name, the debtor's, the description, a line


def test_guide_invoice_is_paid_by_card(
    page: Page, client: httpx.Client, firm: Firm, receiver: Receiver, screenshots: Path
) -> None:
    topics = ["payment.succeeded", "invoice.updated"]
    client.post(f"{API}/webhooks", json={"name": "w", "url": receiver.url, "events": topics})
    invoice = create(
        client, firm, payment_methods_override=GUIDE_INVOICE["payment_methods_override"]
    )

    response = page.goto(invoice["payment_uri"])
    assert response is not None
    assert "default-src 'none'" in response.headers["content-security-policy"]
    expect(page.get_by_role("heading", level=1)).to_have_text(page.title().removeprefix("Pay "))
    expect(page.get_by_test_id("amount-due")).to_have_text("$123.45")
    expect(page.locator("table.lines tbody tr")).to_have_count(2)
    expect(page.locator("table.lines")).to_contain_text("Listened to voice message")
    expect(page.locator("table.lines")).to_contain_text("$1,000.00")
    expect(page.get_by_text("23 July 1953")).to_be_visible()
    shot(page, screenshots, "1-payment-page")

    fill_card(page, "4242 4242 4242 4242")
    page.get_by_role("button", name="Pay $123.45").click()
    expect(page.get_by_test_id("receipt")).to_contain_text("$123.45")
    expect(page.get_by_text("Visa •••• 4242")).to_be_visible()
    shot(page, screenshots, "3-receipt")

    assert status_of(client, invoice["invoice_id"]) == ("Paid", "0.00", 1)
    received = receiver.wait_for(2)
    assert sorted(r.envelope["event_type"] for r in received) == topics[::-1]

    page.goto(invoice["payment_uri"])
    expect(page.get_by_test_id("invoice-state")).to_contain_text("Paid")
    expect(page.locator("form")).to_have_count(0)
    shot(page, screenshots, "5-paid")


def test_declined_card_shows_why_and_the_form_stays_usable(
    page: Page, client: httpx.Client, firm: Firm, screenshots: Path
) -> None:
    invoice = create(client, firm)
    page.goto(invoice["payment_uri"])
    fill_card(page, "4000 0000 0000 0002")
    page.get_by_role("button", name="Pay $123.45").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("declined")
    expect(page.get_by_role("button", name="Pay $123.45")).to_be_enabled()
    shot(page, screenshots, "2-declined")
    assert status_of(client, invoice["invoice_id"]) == ("Submitted", "123.45", 0)

    page.get_by_label("Card number").fill("4000 0000 0000 9995")
    page.get_by_role("button", name="Pay $123.45").click()
    expect(alert).to_contain_text("insufficient funds")

    page.get_by_label("Card number").fill("4242424242424242")
    page.get_by_role("button", name="Pay $123.45").click()
    expect(page.get_by_test_id("receipt")).to_be_visible()
    assert status_of(client, invoice["invoice_id"]) == ("Paid", "0.00", 1)


def test_pay_by_keyboard_alone(page: Page, client: httpx.Client, firm: Firm) -> None:
    invoice = create(client, firm)
    page.goto(invoice["payment_uri"])
    page.keyboard.press("Tab")  # the first field: the method choice (Card is checked)
    expect(page.get_by_role("radio", name="Card")).to_be_focused()
    for value in ("Frank Herman", "4242424242424242", "12", "2099", "123"):
        page.keyboard.press("Tab")
        page.keyboard.type(value)
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Pay $123.45")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("receipt")).to_be_visible()
    assert status_of(client, invoice["invoice_id"]) == ("Paid", "0.00", 1)


def test_double_click_charges_once(page: Page, client: httpx.Client, firm: Firm) -> None:
    invoice = create(client, firm)
    page.goto(invoice["payment_uri"])
    fill_card(page, "4242424242424242")
    page.get_by_role("button", name="Pay $123.45").dblclick()
    expect(page.get_by_test_id("receipt")).to_be_visible()
    assert status_of(client, invoice["invoice_id"]) == ("Paid", "0.00", 1)


def test_direct_debit_from_the_page(page: Page, client: httpx.Client, firm: Firm) -> None:
    invoice = create(client, firm)
    page.goto(invoice["payment_uri"])
    page.get_by_role("radio", name="Direct debit").check()
    expect(page.get_by_label("Card number")).to_be_hidden()
    page.get_by_label("Account name").fill("Frank Herman")
    page.get_by_label("BSB").fill("062-000")
    page.get_by_label("Account number").fill("12345678")
    page.get_by_role("button", name="Pay $123.45").click()
    expect(page.get_by_test_id("receipt")).to_contain_text("being processed")
    assert status_of(client, invoice["invoice_id"]) == ("Authorised", "0.00", 1)


def test_phone_layout_has_no_sideways_scroll(
    browser: Browser, client: httpx.Client, firm: Firm, screenshots: Path
) -> None:
    invoice = create(client, firm, description="A" * 80, external_reference="R" * 60)
    context = browser.new_context(viewport=PHONE, device_scale_factor=2)
    page = context.new_page()
    page.goto(invoice["payment_uri"])
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(page, screenshots, "4-phone")
    fill_card(page, "4242424242424242")
    page.get_by_role("button", name="Pay $123.45").click()
    expect(page.get_by_test_id("receipt")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    context.close()


def test_redirect_after_paying(
    page: Page, client: httpx.Client, firm: Firm, server: Server
) -> None:
    back = f"{server.base_url}/healthz?paid=1"
    invoice = create(client, firm, payment_redirect_url=back)
    page.goto(invoice["payment_uri"])
    fill_card(page, "4242424242424242")
    page.get_by_role("button", name="Pay $123.45").click()
    page.wait_for_url(back)
    assert status_of(client, invoice["invoice_id"])[0] == "Paid"


def test_voided_and_unknown_invoices(
    page: Page, client: httpx.Client, firm: Firm, server: Server, screenshots: Path
) -> None:
    invoice = create(client, firm)
    client.post(f"{API}/invoices/{invoice['invoice_id']}/void")
    page.goto(invoice["payment_uri"])
    expect(page.get_by_test_id("invoice-state")).to_contain_text("Voided")
    expect(page.locator("form")).to_have_count(0)
    shot(page, screenshots, "6-voided")

    for missing in (str(uuid.uuid4()), "not-an-invoice"):
        response = page.goto(f"{server.base_url}/pay/{missing}")
        assert response is not None
        assert response.status == 404
        expect(page.get_by_role("heading", level=1)).to_have_text("We couldn't find that invoice")
    shot(page, screenshots, "7-not-found")
