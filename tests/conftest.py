"""Test harness: every test runs against a real server process, on SQLite and on PostgreSQL.

For each backend the session starts ``partnerpay serve --demo`` on a free loopback port
against its own database (a SQLite file in a temporary folder; a throwaway PostgreSQL
database created for this run and dropped after it). Tests talk HTTP to that server and
set up partners and firms through the same service functions the admin CLI uses.

PostgreSQL is used when reachable at ``PARTNERPAY_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``); without it the PostgreSQL
runs are skipped, or fail when ``PARTNERPAY_REQUIRE_POSTGRES=1``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from partnerpay.db import (
    Database,
    created_postgres_database,
    plain_postgres_connection,
    upgrade_database,
)
from partnerpay.firms.models import FirmStatus
from tests.receiver import Receiver
from tests.stripe_emulator import StripeEmulator
from tests.support import (
    Firm,
    Partner,
    Server,
    create_firm,
    create_partner,
    partner_client,
)

ADMIN_POSTGRES_URL = os.environ.get(
    "PARTNERPAY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("PARTNERPAY_REQUIRE_POSTGRES") == "1"
FAST_WEBHOOKS = {
    "PARTNERPAY_WEBHOOK_RETRY_SCHEDULE": "0.2,0.5,1,2,3",
    "PARTNERPAY_WEBHOOK_TIMEOUT": "3",
    "PARTNERPAY_WEBHOOK_POLL_INTERVAL": "0.2",
}


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def throwaway_postgres_database() -> Iterator[str]:
    """A new PostgreSQL database, dropped afterwards; skips (or fails in CI) without one."""
    try:
        plain_postgres_connection(ADMIN_POSTGRES_URL).close()
    except psycopg.OperationalError as error:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL is required but unreachable: {error}")
        pytest.skip(f"PostgreSQL unreachable: {error}")
    with created_postgres_database(ADMIN_POSTGRES_URL, "partnerpay_test") as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The PostgreSQL database of this run's shared server."""
    with throwaway_postgres_database() as url:
        yield url


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'partnerpay.db'}"
    upgrade_database(url)
    return url


@pytest.fixture
def fresh_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A migrated database of the same backend as ``database_url``, for a test that
    runs servers of its own (so no other dispatcher shares its deliveries)."""
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'own.db'}"
        upgrade_database(url)
        yield url
        return
    with throwaway_postgres_database() as url:
        upgrade_database(url)
        yield url


@pytest.fixture(scope="session")
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    yield db
    db.dispose()


@pytest.fixture(scope="session")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = Path(tmp_path_factory.mktemp("server")) / "server.log"
    with Server.start(database_url, log, demo=True, env=FAST_WEBHOOKS) as running:
        yield running


@pytest.fixture
def partner(database: Database) -> Partner:
    return create_partner(database)


@pytest.fixture
def firm(database: Database, partner: Partner) -> Firm:
    return create_firm(database, partner, trust_account=True)


@pytest.fixture
def pending_firm(database: Database, partner: Partner) -> Firm:
    return create_firm(database, partner, status=FirmStatus.PENDING)


@pytest.fixture
def client(server: Server, partner: Partner) -> Iterator[httpx.Client]:
    """An HTTP client authenticated as a fresh partner of its own."""
    with partner_client(server, partner) as http:
        yield http


@pytest.fixture
def anonymous(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        yield http


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver().running() as running:
        yield running


@pytest.fixture(scope="session")
def stripe_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StripeEmulator]:
    """One localstripe for the session: its state is global to it, so every test makes
    objects of its own."""
    log = Path(tmp_path_factory.mktemp("localstripe")) / "localstripe.log"
    with StripeEmulator.start(log) as running:
        yield running


@pytest.fixture(scope="session")
def stripe_server(
    database_url: str, stripe_emulator: StripeEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server taking payments through the emulator, on the session's database, with
    ``/webhooks/stripe`` registered with the emulator (every event reaches every
    registered server; each applies those about its own payments)."""
    log = Path(tmp_path_factory.mktemp("stripe-server")) / "server.log"
    env = {**FAST_WEBHOOKS, **stripe_emulator.gateway_env(), "PARTNERPAY_RUN_DISPATCHER": "true"}
    with Server.start(database_url, log, env=env) as running:
        name = "sqlite" if database_url.startswith("sqlite") else "postgresql"
        stripe_emulator.register_webhook(name, f"{running.base_url}/webhooks/stripe")
        yield running


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    """Playwright driving Debian's chromium; the browser tests are skipped without it,
    unless ``PARTNERPAY_REQUIRE_BROWSER=1`` (CI)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("PARTNERPAY_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is required (PARTNERPAY_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("chromium is not installed")
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
    yield chromium
    chromium.close()


@pytest.fixture
def stripe_client(stripe_server: Server, partner: Partner) -> Iterator[httpx.Client]:
    """``client``, on the server that takes payments through Stripe."""
    with partner_client(stripe_server, partner) as http:
        yield http
