"""Helpers for tests: the server process, partners and firms, and request bodies."""

from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from partnerpay.db import Database
from partnerpay.demo import sandbox_account
from partnerpay.firms.models import FirmStatus
from partnerpay.firms.schemas import FirmCreate
from partnerpay.firms.service import connect_settlement_account
from partnerpay.firms.service import create_firm as create_firm_row
from partnerpay.partners.service import create_partner as create_partner_row

STARTUP_DEADLINE_S = 60.0
API = "/api/v3/partner"


def fullwidth(text: str) -> str:
    """``text`` with fullwidth digits (U+FF10...) for ASCII ones (which ``\\d`` matches)."""
    return text.translate({ord("0") + d: 0xFF10 + d for d in range(10)})


def arabic_indic(text: str) -> str:
    """``text`` with Arabic-Indic digits (U+0660...) for ASCII ones."""
    return text.translate({ord("0") + d: 0x0660 + d for d in range(10)})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: Any, deadline_s: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail after the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    @contextmanager
    def start(
        cls,
        database_url: str,
        log: Path,
        *,
        demo: bool = False,
        env: dict[str, str] | None = None,
        workers: int = 1,
    ) -> Iterator[Server]:
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "partnerpay", "serve", "--port", str(port)]
        command += ["--workers", str(workers)] if workers > 1 else []
        environment = {
            **os.environ,
            "PARTNERPAY_DATABASE_URL": database_url,
            "PARTNERPAY_PUBLIC_BASE_URL": base_url,
            "PARTNERPAY_RATE_LIMIT": "0",
            "PARTNERPAY_PAYMENT_ATTEMPTS_PER_ADDRESS": "0",
            "PARTNERPAY_PAYMENT_ATTEMPTS_PER_INVOICE": "0",
            "PARTNERPAY_AUTH_FAILURE_RATE_LIMIT": "0",
            **(env or {}),
        }
        with log.open("ab") as output:
            process = subprocess.Popen(
                [*command, "--demo"] if demo else command,
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        server = cls(base_url=base_url, process=process, log=log)
        try:
            wait_until(server.is_healthy, STARTUP_DEADLINE_S, f"the server ({log})")
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def is_healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"server exited: {self.log.read_text()}")
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False


@contextmanager
def worker_process(
    database_url: str, log: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """A ``partnerpay worker`` process, stopped with SIGTERM afterwards."""
    env = {**os.environ, "PARTNERPAY_DATABASE_URL": database_url, **env}
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "partnerpay", "worker"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


@dataclass(frozen=True)
class Partner:
    id: uuid.UUID
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-CHANNEL-PARTNER-ID": str(self.id), "X-API-KEY": self.api_key}


@dataclass(frozen=True)
class Firm:
    id: uuid.UUID
    partner: Partner


def create_partner(database: Database) -> Partner:
    with database.unit_of_work() as session:
        issued = create_partner_row(session, f"Test partner {uuid.uuid4().hex[:8]}")
        return Partner(id=issued.partner.id, api_key=issued.api_key)


def create_firm(
    database: Database,
    partner: Partner,
    *,
    status: FirmStatus = FirmStatus.ACTIVE,
    trust_account: bool = False,
    currency: str = "AUD",
    connected: bool = False,
) -> Firm:
    """A firm of this partner's; ``connected``: each of its settlement accounts with a
    (Stripe) connected account of its own."""
    name = f"Firm {uuid.uuid4().hex[:8]}"
    data = FirmCreate.model_validate(
        {
            "trading_name": name,
            "currency": currency,
            "office_account": sandbox_account(name, "Office").model_dump(),
            "trust_account": sandbox_account(name, "Trust").model_dump() if trust_account else None,
        }
    )
    with database.unit_of_work() as session:
        firm = create_firm_row(session, partner.id, data, status=status)
        for account in firm.accounts if connected else ():
            connect_settlement_account(session, account.id, f"acct_{account.id.hex[:16]}")
        return Firm(id=firm.id, partner=partner)


GUIDE_INVOICE: dict[str, Any] = {
    "firm_id": "7f623e2d-270d-8ad8-2e13-b7bfd022703e",
    "external_id": "e69f9433-885b-4321-bb48-9f5084850893",
    "amount": "123.45",
    "settlement_account": "Office",
    "external_reference": "inv-123",
    "currency": "AUD",
    "due_date": "1953-07-23T13:56:24.084Z",
    "description": "Charge for case setup",
    "matter": {
        "external_id": "my-unique-external-id",
        "external_reference": "my-external-reference",
        "description": "The matter of Frank vs Herman ",
        "type": "court",
    },
    "debtor": {
        "external_id": "case-client-1234",
        "name": "Frank",
        "email": "frank@email.com",
        "contact_number": "1300234567",
    },
    "line_items": [
        {
            "amount": "100",
            "name": "Phone call",
            "description": "Listened to voice message",
            "quantity": 1,
            "tax_rate": "10",
        },
        {
            "amount": "1000",
            "name": "Phone call",
            "description": "Replied to voice mail",
            "quantity": 1,
            "tax_rate": "15",
        },
    ],
    "notes": ["Got to know client", "Created initial case file"],
    "payment_methods_override": ["Card"],
}


def invoice_body(firm: Firm, **overrides: Any) -> dict[str, Any]:
    """The guide's example invoice for this firm, with a fresh external id."""
    body = copy.deepcopy(GUIDE_INVOICE)
    body.update(firm_id=str(firm.id), external_id=f"inv-{uuid.uuid4()}")
    body.update(overrides)
    return body


PROBLEM_CONTENT_TYPE = "application/problem+json"


def assert_problem(
    response: httpx.Response, status: int, type_: str, field: str | None = None
) -> dict[str, Any]:
    """The response is a problem+json document of this status and type (naming ``field``)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0].strip() == PROBLEM_CONTENT_TYPE
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status, problem
    assert problem["type"] == type_, problem
    assert problem["error_context"]["code"] == type_, problem
    assert isinstance(problem["title"], str), problem
    assert problem["title"], problem
    assert isinstance(problem["detail"], str), problem
    assert problem["detail"], problem
    if field is not None:
        named = [entry["field"] for entry in problem["error_context"]["fields"]]
        assert field in named, problem
        assert field in problem["detail"], problem
    return problem


@contextmanager
def partner_client(server: Server, partner: Partner) -> Iterator[httpx.Client]:
    """An HTTP client authenticated as ``partner``."""
    with httpx.Client(base_url=server.base_url, headers=partner.headers, timeout=30) as http:
        yield http


def create_invoice(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    """POST the invoice, expect 200, and return the invoice object."""
    response = client.post(f"{API}/invoices", json=body)
    assert response.status_code == 200, response.text
    invoice: dict[str, Any] = response.json()["invoice"]
    return invoice


def invoice_by_external_id(
    client: httpx.Client, firm_id: object, external_id: str
) -> httpx.Response:
    return client.get(f"{API}/invoices/firm/{firm_id}/{external_id}")


def list_pages(
    client: httpx.Client, path: str, key: str, **params: Any
) -> list[list[dict[str, Any]]]:
    """Every page of a cursor-paginated list, following ``next_cursor`` to the end."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get(f"{API}{path}", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page[key])
        if not page["has_more"]:
            assert "next_cursor" not in page, page
            return pages
        cursor = page["next_cursor"]
        assert cursor, page


def list_all(client: httpx.Client, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a cursor-paginated list, in order."""
    return [item for page in list_pages(client, path, key, **params) for item in page]
