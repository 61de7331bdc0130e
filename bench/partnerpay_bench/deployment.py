"""partnerpay started on one database as a user would start it, from the outside:
SQLite: ``partnerpay serve`` (one process, the webhook dispatcher inside); PostgreSQL:
``serve --workers 2`` with its dispatcher off, and one ``partnerpay worker``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from partnerpay.db import Database, upgrade_database
from partnerpay.demo import sandbox_account
from partnerpay.firms.models import FirmStatus
from partnerpay.firms.schemas import FirmCreate
from partnerpay.firms.service import create_firm
from partnerpay.partners.service import create_partner

from .settings import free_port

SETUPS = {
    "sqlite": "serve (one process, dispatcher inside)",
    "postgresql": "serve --workers 2, dispatcher off; one partnerpay worker",
}


@contextmanager
def process(
    args: list[str], env: dict[str, str], log_file: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log_file.open("ab") as output:
        proc = subprocess.Popen(args, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_healthy(base_url: str, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not become healthy")


@dataclass(frozen=True)
class Deployment:
    """partnerpay started on one database as a user would, with a partner and an active
    firm to drive it as."""

    database: Database
    server: subprocess.Popen[bytes]
    base_url: str
    partner_id: uuid.UUID
    firm_id: uuid.UUID
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-CHANNEL-PARTNER-ID": str(self.partner_id), "X-API-KEY": self.api_key}

    @property
    def wrk_env(self) -> dict[str, str]:
        return {
            "BENCH_PARTNER_ID": str(self.partner_id),
            "BENCH_API_KEY": self.api_key,
            "BENCH_FIRM_ID": str(self.firm_id),
        }


@contextmanager
def deployment(name: str, database_url: str, workdir: Path, label: str) -> Iterator[Deployment]:
    """SQLite: ``partnerpay serve``. PostgreSQL: ``serve --workers 2`` with its dispatcher
    off, and one ``partnerpay worker``. Logs go to ``workdir``, named by ``label``."""
    upgrade_database(database_url)
    database = Database(database_url)
    with database.unit_of_work() as session:
        issued = create_partner(session, "bench")
        firm = create_firm(
            session,
            issued.partner.id,
            FirmCreate(
                trading_name="Bench Legal", office_account=sandbox_account("Bench", "Office")
            ),
            status=FirmStatus.ACTIVE,
        )
        partner_id, firm_id = issued.partner.id, firm.id
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PARTNERPAY_DATABASE_URL": database_url,
        "PARTNERPAY_RATE_LIMIT": "0",
        "PARTNERPAY_PUBLIC_BASE_URL": base_url,
        "PARTNERPAY_WEBHOOK_POLL_INTERVAL": "0.5",
    }
    serve = [sys.executable, "-m", "partnerpay", "serve", "--port", str(port)]
    with ExitStack() as stack:
        stack.callback(database.dispose)  # last, once the servers have stopped
        if name == "postgresql":
            serve += ["--workers", "2"]
            env_api = {**env, "PARTNERPAY_RUN_DISPATCHER": "false"}
            server = stack.enter_context(process(serve, env_api, workdir / f"{label}-serve.log"))
            worker = [sys.executable, "-m", "partnerpay", "worker"]
            stack.enter_context(process(worker, env, workdir / f"{label}-worker.log"))
        else:
            server = stack.enter_context(process(serve, env, workdir / f"{label}-serve.log"))
        wait_healthy(base_url)
        yield Deployment(database, server, base_url, partner_id, firm_id, issued.api_key)
