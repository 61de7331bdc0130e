"""The ``partnerpay`` command: serve, db and admin."""

import json
import logging.config
import os
import signal
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Annotated, Any, NoReturn

import prometheus_client
import typer
import uvicorn
from pydantic import ValidationError

from partnerpay.artifacts.models import PaymentMethod
from partnerpay.background import job_runner
from partnerpay.config import (
    ConfigurationError,
    Environment,
    GatewayName,
    Settings,
    get_settings,
)
from partnerpay.db import Database, upgrade_database, utcnow
from partnerpay.demo import sandbox_account, seed_demo
from partnerpay.firms import service as firms
from partnerpay.firms.models import FirmStatus
from partnerpay.firms.schemas import FirmCreate, FirmOut
from partnerpay.invoices import kind as _invoices  # noqa: F401  (payments reach invoices by it)
from partnerpay.ledger.models import Payout, PayoutStatus
from partnerpay.ledger.pricing import set_firm_pricing as set_pricing
from partnerpay.money import Currency, format_minor
from partnerpay.observability import LOGGING_CONFIG, MULTIPROCESS_ENV
from partnerpay.partners import service as partners
from partnerpay.partners.models import Partner
from partnerpay.payments import service as payments
from partnerpay.payments.gateways import gateway_for
from partnerpay.payouts import service as payouts
from partnerpay.payouts.bankfiles import remitter_from_settings
from partnerpay.payouts.verification import verify_ledger
from partnerpay.problems import ProblemError, field_path
from partnerpay.processes import freeze_startup_objects
from partnerpay.protocol import LimitedHttpToolsProtocol

app = typer.Typer(help="partnerpay: invoicing and payments for professional firms.")
db_app = typer.Typer(help="Database schema.")
admin_app = typer.Typer(help="Operator commands.")
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")

GRACEFUL_SHUTDOWN_S = 30
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _database() -> Database:
    return Database(get_settings().database_url)


def _print(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result))
    else:
        for key, value in result.items():
            typer.echo(f"{key}: {value}")


def _describe(invalid: ValidationError) -> str:
    return "; ".join(f"{field_path(e['loc'])}: {e['msg']}" for e in invalid.errors())


def _startable_settings() -> Settings:
    """The settings, if a serving process may start with them; else exit 2, saying why."""
    settings = get_settings()
    try:
        settings.require_startable()
    except ConfigurationError as refused:
        typer.echo(f"error: {refused}", err=True)
        raise typer.Exit(code=2) from refused
    return settings


def _fail(error: ProblemError) -> NoReturn:
    typer.echo(f"error: {error.problem.detail}", err=True)
    raise typer.Exit(code=1)


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    demo: Annotated[bool, typer.Option(help="Seed the integration guide's demo data.")] = False,
) -> None:
    """Apply migrations and serve the API."""
    settings = _startable_settings()
    if demo and settings.env != Environment.SANDBOX:
        typer.echo("error: --demo is only allowed with PARTNERPAY_ENV=sandbox", err=True)
        raise typer.Exit(code=2)
    upgrade_database(settings.database_url)
    if demo:
        database = _database()
        with database.unit_of_work() as session:
            seed_demo(session)
        database.dispose()
    if workers > 1 and not os.environ.get(MULTIPROCESS_ENV):
        # Let every worker process add to the metrics /metrics shows.
        os.environ[MULTIPROCESS_ENV] = tempfile.mkdtemp(prefix="partnerpay-metrics-")
    uvicorn.run(
        "partnerpay.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=LOGGING_CONFIG,
        access_log=False,
        http=LimitedHttpToolsProtocol,
        # A client's address is the peer's, unless that peer is a proxy named here.
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


@app.command()
def worker(
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve this worker's Prometheus metrics on this port.")
    ] = None,
) -> None:
    """Run every kind of background job (webhook delivery), without serving the API,
    until SIGTERM or Ctrl-C."""
    logging.config.dictConfig(LOGGING_CONFIG)
    if metrics_port:
        prometheus_client.start_http_server(metrics_port, addr="127.0.0.1")
    settings = _startable_settings()
    database = _database()
    dispatcher = job_runner(database, settings)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    freeze_startup_objects()
    dispatcher.start()
    typer.echo(f"worker started: {', '.join(dispatcher.kind_names)}")
    stopping.wait()
    dispatcher.stop()
    database.dispose()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration not yet applied."""
    upgrade_database(get_settings().database_url)
    typer.echo("database is up to date")


@admin_app.command("create-partner")
def create_partner(
    name: Annotated[str, typer.Option(help="The partner's name.")], as_json: JsonFlag = False
) -> None:
    """Create a channel partner and print its id and first API key."""
    database = _database()
    with database.unit_of_work() as session:
        issued = partners.create_partner(session, name)
        result = {"channel_partner_id": str(issued.partner.id), "api_key": issued.api_key}
    database.dispose()
    _print(result, as_json)


@admin_app.command("create-firm")
def create_firm(
    partner_id: Annotated[uuid.UUID, typer.Option(help="The owning partner's id.")],
    trading_name: Annotated[str, typer.Option()],
    legal_name: Annotated[str | None, typer.Option()] = None,
    external_id: Annotated[str | None, typer.Option()] = None,
    currency: Annotated[Currency, typer.Option()] = Currency.AUD,
    status: Annotated[FirmStatus, typer.Option()] = FirmStatus.ACTIVE,
    trust_account: Annotated[
        bool, typer.Option("--trust-account", help="Give the firm a Trust account too.")
    ] = False,
    firm_id: Annotated[uuid.UUID | None, typer.Option()] = None,
    surcharge_percent: Annotated[
        str | None, typer.Option(help="Card surcharge in percent; turns surcharging on.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a firm with a sandbox Office account (and Trust account, if asked)."""
    try:
        data = FirmCreate(
            surcharge_percent=surcharge_percent,
            legal_name=legal_name,
            trading_name=trading_name,
            external_id=external_id,
            currency=currency,
            office_account=sandbox_account(trading_name, "Office"),
            trust_account=sandbox_account(trading_name, "Trust") if trust_account else None,
        )
    except ValidationError as invalid:
        _fail(ProblemError(400, "validation_error", _describe(invalid)))
    database = _database()
    try:
        with database.unit_of_work() as session:
            if session.get(Partner, partner_id) is None:
                raise ProblemError(404, "not_found", f"No partner with id '{partner_id}'.")
            firm = firms.create_firm(session, partner_id, data, status=status, firm_id=firm_id)
            result = FirmOut.of(firm, reveal=True).wire()
    except ProblemError as error:
        _fail(error)
    finally:
        database.dispose()
    _print(result, as_json)


@admin_app.command("settle-payments")
def settle_payments() -> None:
    """Settle every sandbox direct debit still processing (the sandbox bank accepts them
    all)."""
    settings = get_settings()
    database = _database()
    with database.session(read_only=True) as session:
        pending = payments.unsettled_payment_ids(session, GatewayName.SANDBOX)
    for payment_id in pending:
        # A unit of work per payment: its invoice is locked for that payment alone, and one
        # that fails leaves those settled before it settled.
        with database.unit_of_work() as session:
            payments.settle_payment(session, payment_id, settings.pay_base_url)
    database.dispose()
    typer.echo(f"settled {len(pending)} payment(s)")


@admin_app.command("reconcile-payments")
def reconcile_payments() -> None:
    """Ask the gateway about every payment still unsettled (a card waiting for 3-D Secure,
    a payment still processing) and every refund still under way, and apply what it says,
    so that a lost processor notification never leaves an invoice unpaid or a refund
    unfinished."""
    settings = _startable_settings()
    database = _database()
    try:
        changed, asked = payments.reconcile_all(database, gateway_for(settings), settings)
    finally:
        database.dispose()
    typer.echo(f"reconciled {asked} payment(s) and refund(s): {changed} changed")


@admin_app.command("connect-account")
def connect_account(
    settlement_account_id: str,
    processor_account: Annotated[str, typer.Argument(help="The gateway's account, acct_...")],
) -> None:
    """Take a settlement account's money into a gateway account of its own (a Stripe
    connected account): payments to it are refused until it has one."""
    database = _database()
    try:
        with database.unit_of_work() as session:
            account = firms.connect_settlement_account(
                session, settlement_account_id, processor_account
            )
            typer.echo(
                f"{account.account_type} account {account.id} settles through {processor_account}"
            )
    except ProblemError as error:
        _fail(error)
    finally:
        database.dispose()


@admin_app.command("set-firm-status")
def set_firm_status(firm_id: str, status: FirmStatus) -> None:
    """Move a firm to a new status (Pending, Awaiting, Active, Closed)."""
    database = _database()
    try:
        with database.unit_of_work() as session:
            firm = firms.set_firm_status(session, firm_id, status)
            typer.echo(f"firm {firm.id} is {firm.status}")
    except ProblemError as error:
        _fail(error)
    finally:
        database.dispose()


@admin_app.command("set-firm-pricing")
def set_firm_pricing(
    firm_id: str,
    method: Annotated[PaymentMethod, typer.Option(help="The payment method priced.")],
    percent: Annotated[str, typer.Option(help='Of what the client is charged: "1.75".')],
    fixed: Annotated[str, typer.Option(help='Per payment, in the currency: "0.30".')] = "0",
) -> None:
    """Price a payment method for a firm: the platform's fee for each payment made from
    now on, charged to the firm's Office account (never to Trust money)."""
    database = _database()
    try:
        with database.unit_of_work() as session:
            pricing = set_pricing(session, firm_id, method, percent, fixed)
            fixed_fee = format_minor(pricing.fixed_minor)
            typer.echo(f"firm {pricing.firm_id} pays {pricing.percent}% + {fixed_fee} per {method}")
    except ProblemError as error:
        _fail(error)
    finally:
        database.dispose()


@admin_app.command("run-payouts")
def run_payouts(
    firm_id: Annotated[
        uuid.UUID | None, typer.Option("--firm-id", help="Only this firm's accounts.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Pay out every settlement account's money not yet paid out: a payout per account
    and currency whose balance is above zero (a balance at or below zero is carried to the
    next run)."""
    settings = get_settings()
    database = _database()
    try:
        made = payouts.run_payouts(database, settings, firm_id)
    finally:
        database.dispose()
    if as_json:
        typer.echo(json.dumps({"payouts": [_payout_line(payout) for payout in made]}))
        return
    for payout in made:
        typer.echo(" ".join(str(value) for value in _payout_line(payout).values()))
    typer.echo(f"made {len(made)} payout(s)")


def _payout_line(payout: Payout) -> dict[str, str]:
    return {
        "payout_id": str(payout.id),
        "payout_reference": payout.payout_reference,
        "account_id": str(payout.account_id),
        "payout_total": format_minor(payout.total_minor),
        "currency": payout.currency,
    }


@admin_app.command("export-payouts")
def export_payouts(
    output: Annotated[Path, typer.Option(help="The directory the files are written to.")],
) -> None:
    """Write the bank files of every submitted payout not yet exported: an ABA (direct
    entry) file for AUD payouts, a CSV for each other currency. Each payout is exported
    once; the files are checked by reading them back."""
    settings = get_settings()
    try:
        remitter = remitter_from_settings(settings)
    except ConfigurationError as refused:
        typer.echo(f"error: {refused}", err=True)
        raise typer.Exit(code=2) from refused
    output.mkdir(parents=True, exist_ok=True)
    database = _database()
    written: list[Path] = []
    try:
        # The payouts are marked exported as their files are written: a file whose
        # marking does not commit is removed, so that no payout is in two uploads.
        with database.unit_of_work() as session:
            files = payouts.export_payouts(session, remitter, utcnow().date())
            for bank_file in files:
                written.append(_write_new(output / bank_file.name, bank_file.text))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    finally:
        database.dispose()
    for path, bank_file in zip(written, files, strict=True):
        typer.echo(f"{path}: {len(bank_file.payout_ids)} payout(s)")
    typer.echo(f"exported {sum(len(f.payout_ids) for f in files)} payout(s)")


def _write_new(path: Path, text: str) -> Path:
    """Write a file whole or not at all (a temporary file renamed into place), never over
    an existing one."""
    if path.exists():
        raise FileExistsError(path)
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_bytes(text.encode("utf-8"))
    temporary.rename(path)
    return path


@admin_app.command("set-payout-status")
def set_payout_status(payout_id: str, status: PayoutStatus) -> None:
    """Record what the bank did with a payout (Paid)."""
    database = _database()
    try:
        with database.unit_of_work() as session:
            payout = payouts.set_payout_status(session, payout_id, status)
            typer.echo(f"payout {payout.id} is {payout.status}")
    except ProblemError as error:
        _fail(error)
    finally:
        database.dispose()


@admin_app.command("verify-ledger")
def verify_ledger_command(as_json: JsonFlag = False) -> None:
    """Check that every account's ledger entries sum to what was paid out of it plus what
    is pending, and that the ledger agrees with every payment, refund and payout; exit 1
    naming each disagreement."""
    database = _database()
    try:
        with database.session(read_only=True) as session:
            report = verify_ledger(session)
    finally:
        database.dispose()
    if as_json:
        accounts = [books.wire() for books in report.accounts]
        typer.echo(json.dumps({"ok": report.ok, "accounts": accounts, "problems": report.problems}))
    else:
        for books in report.accounts:
            typer.echo(
                f"{books.account_type} {books.account_id} {books.currency}: received "
                f"{format_minor(books.received)} = paid out {format_minor(books.paid_out)}"
                f" + pending {format_minor(books.pending)}"
            )
        for problem in report.problems:
            typer.echo(f"problem: {problem}", err=True)
        typer.echo("ledger verified" if report.ok else f"{len(report.problems)} problem(s)")
    if not report.ok:
        raise typer.Exit(code=1)
