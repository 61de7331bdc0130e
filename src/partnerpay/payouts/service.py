"""Payout runs, and payouts as partners read them.

A run pays out, for each settlement account and currency, every ledger entry not yet paid
out, as one payout of their sum (:func:`pay_out`): payments net of refunds and, on an
Office account, of fees. An account whose entries sum to nothing or less is left as it is,
its balance carried to the next run; a Trust account is never made to cover an Office
one, as each account's payout is its own entries only. Each payout is made in one
transaction, with the account's row locked: the payout, its entries' membership, its own
``payout`` entry and its event commit together or not at all, so a run killed midway
leaves no half-made payout and the next run pays out what is left. Two runs racing for an
account take turns on the lock (SQLite lets one writer in at a time), and the second
finds the entries paid out; ``payout_entries``' key on the entry is the last guard.
"""

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from partnerpay.artifacts import service as artifacts
from partnerpay.artifacts.kinds import kind_of
from partnerpay.config import Settings
from partnerpay.db import Database, utcnow
from partnerpay.events.models import Topic
from partnerpay.events.outbox import emit_event
from partnerpay.firms.models import AccountType, Firm, SettlementAccount
from partnerpay.firms.schemas import masked
from partnerpay.ledger.models import EntryKind, LedgerEntry, Payout, PayoutEntry, PayoutStatus
from partnerpay.ledger.service import not_paid_out
from partnerpay.listing import ListQuery
from partnerpay.money import Currency, format_minor
from partnerpay.pagination import NumberedPage, numbered_page
from partnerpay.payments.models import REFUNDED_STATUSES, Payment, Refund
from partnerpay.payments.schemas import ArtifactPayment
from partnerpay.payouts.bankfiles import PayoutLine, Remitter, build_aba, build_payouts_csv
from partnerpay.payouts.schemas import BankAccountSummary, PayoutOut
from partnerpay.problems import ProblemError, not_found
from partnerpay.wire import parse_id

logger = logging.getLogger(__name__)

DEFAULT_SINCE = timedelta(hours=24)
SORT_FIELDS: dict[str, ColumnElement[Any] | InstrumentedAttribute[Any]] = {
    "date": Payout.created_at,
    "payout_total": Payout.total_minor,
    "status": Payout.status,
    "account_id": Payout.account_id,
}


def payout_reference(payout_id: uuid.UUID, made_at: datetime) -> str:
    """What the firm's bank statement shows: ``PP``, the date and ten characters of the
    payout's id, 18 characters (the ABA lodgement reference's length). Unique: the
    database refuses a second payout with the same one."""
    return f"PP{made_at:%y%m%d}{payout_id.hex[:10].upper()}"


def due(session: Session, firm_id: uuid.UUID | None = None) -> list[tuple[uuid.UUID, str]]:
    """The accounts (of one firm, if given), with the currency, that have entries not yet
    paid out."""
    statement = select(LedgerEntry.account_id, LedgerEntry.currency).where(*not_paid_out())
    if firm_id is not None:
        statement = statement.where(LedgerEntry.firm_id == firm_id)
    rows = session.execute(
        statement.group_by(LedgerEntry.account_id, LedgerEntry.currency).order_by(
            LedgerEntry.account_id, LedgerEntry.currency
        )
    )
    return [(account_id, currency) for account_id, currency in rows]


def pay_out(
    session: Session, account_id: uuid.UUID, currency: str, pay_base_url: str
) -> Payout | None:
    """Pay out the account's money in ``currency`` not yet paid out, as one payout of it
    all; ``None`` if it comes to nothing or less (it is carried to the next run)."""
    account = session.get_one(SettlementAccount, account_id, with_for_update=True)
    entries = session.scalars(
        select(LedgerEntry)
        .where(*not_paid_out(account_id), LedgerEntry.currency == currency)
        .order_by(LedgerEntry.created_at, LedgerEntry.id)
    ).all()
    total = sum(entry.amount_minor for entry in entries)
    if not entries or total <= 0:
        return None
    firm = session.get_one(Firm, account.firm_id)
    made_at, payout_id = utcnow(), uuid.uuid4()
    payout = Payout(
        id=payout_id,
        partner_id=firm.partner_id,
        firm_id=firm.id,
        account_id=account.id,
        payout_reference=payout_reference(payout_id, made_at),
        currency=currency,
        total_minor=total,
        status=PayoutStatus.SUBMITTED,
        metadata_={},
        created_at=made_at,
    )
    session.add(payout)
    session.flush()
    session.add_all(PayoutEntry(entry_id=entry.id, payout_id=payout.id) for entry in entries)
    session.add(
        LedgerEntry(
            firm_id=firm.id,
            account_id=account.id,
            currency=currency,
            kind=EntryKind.PAYOUT,
            amount_minor=-total,
            payout_id=payout.id,
        )
    )
    session.flush()
    _report(session, payout, Topic.PAYOUT_CREATED)
    _report_artifacts_paid_out(session, entries, pay_base_url)
    return payout


def _report(session: Session, payout: Payout, topic: Topic) -> None:
    firm = session.get_one(Firm, payout.firm_id)
    (resource,) = payout_resources(session, [payout])
    emit_event(session, payout.partner_id, topic, firm.external_id, resource.wire())


def _report_artifacts_paid_out(
    session: Session, entries: Sequence[LedgerEntry], pay_base_url: str
) -> None:
    """Each artifact paid out in the payout now shows it (its payments' ``paid_out``)."""
    paid_out = {(e.artifact_type, e.artifact_id) for e in entries if e.artifact_id is not None}
    for artifact_type, artifact_id in sorted(paid_out, key=str):
        assert artifact_type is not None, "an entry naming an artifact names its kind"
        artifact = artifacts.found(session, kind_of(artifact_type), artifact_id)
        artifacts.report_change(session, artifact, pay_base_url)


def run_payouts(
    database: Database, settings: Settings, firm_id: uuid.UUID | None = None
) -> list[Payout]:
    """Pay out every account's money not yet paid out (of one firm's accounts, if given),
    each payout in a unit of work of its own: the payouts made."""
    with database.session(read_only=True) as session:
        accounts = due(session, firm_id)
    made = []
    for account_id, currency in accounts:
        try:
            with database.unit_of_work() as session:
                payout = pay_out(session, account_id, currency, settings.pay_base_url)
        except IntegrityError:  # another run paid these entries out first
            logger.info("account %s was paid out by another run", account_id)
            continue
        if payout is not None:
            made.append(payout)
    return made


def set_payout_status(session: Session, payout_id: str, status: PayoutStatus) -> Payout:
    """The operator records what the bank did with a payout: ``Paid`` (``Failed`` and
    ``Cancelled`` are reserved: docs/money.md)."""
    payout = session.get(Payout, parse_id(payout_id, "payout"), with_for_update=True)
    if payout is None:
        raise not_found("payout", payout_id)
    if status != PayoutStatus.PAID:
        raise ProblemError(
            400, "status_not_settable", f"A payout can be marked Paid only, not {status}."
        )
    if payout.status != status:
        payout.status, payout.paid_at = status, utcnow()
        payout.updated_at = payout.paid_at
        session.flush()
        _report(session, payout, Topic.PAYOUT_UPDATED)
    return payout


# --- reading payouts ----------------------------------------------------------------------


def payout_resources(session: Session, payouts: Sequence[Payout]) -> list[PayoutOut]:
    """The payouts as partners see them, with their transactions: what each payment
    received, refunded and paid out in it (in four queries however many payouts)."""
    ids = [payout.id for payout in payouts]
    members = session.execute(
        select(PayoutEntry.payout_id, LedgerEntry.payment_id, LedgerEntry.amount_minor)
        .join(LedgerEntry, LedgerEntry.id == PayoutEntry.entry_id)
        .where(PayoutEntry.payout_id.in_(ids))
    ).all()
    paid_out: dict[uuid.UUID, dict[uuid.UUID, int]] = defaultdict(lambda: defaultdict(int))
    for payout_id, payment_id, amount in members:
        assert payment_id is not None, "every entry a payout pays out is a payment's"
        paid_out[payout_id][payment_id] += amount
    payment_ids = {payment_id for payment_id, _ in _pairs(paid_out)}
    payments = {
        payment.id: payment
        for payment in session.scalars(select(Payment).where(Payment.id.in_(payment_ids)))
    }
    refunded = _refunded(session, payment_ids)
    accounts = _accounts(session, {payout.account_id for payout in payouts})
    firms = _firm_ids(session, {payout.firm_id for payout in payouts})
    return [
        PayoutOut(
            payout_id=payout.id,
            payout_reference=payout.payout_reference,
            date=payout.created_at,
            payout_total=format_minor(payout.total_minor),
            currency=Currency(payout.currency),
            account=accounts[payout.account_id],
            firm_id=payout.firm_id,
            external_firm_id=firms[payout.firm_id],
            status=PayoutStatus(payout.status),
            transactions=[
                ArtifactPayment.of(
                    payments[payment_id],
                    refunded_minor=refunded.get(payment_id, 0),
                    paid_out_minor=amount,
                )
                for payment_id, amount in sorted(
                    paid_out[payout.id].items(), key=lambda item: payments[item[0]].created_at
                )
            ],
            metadata=payout.metadata_,
        )
        for payout in payouts
    ]


def _pairs(paid_out: dict[uuid.UUID, dict[uuid.UUID, int]]) -> Iterable[tuple[uuid.UUID, int]]:
    for amounts in paid_out.values():
        yield from amounts.items()


def _refunded(session: Session, payment_ids: set[uuid.UUID]) -> dict[uuid.UUID, int]:
    rows = session.execute(
        select(Refund.payment_id, func.sum(Refund.refund_minor))
        .where(Refund.payment_id.in_(payment_ids), Refund.status.in_(REFUNDED_STATUSES))
        .group_by(Refund.payment_id)
    )
    return {payment_id: int(total) for payment_id, total in rows}


def _accounts(session: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, BankAccountSummary]:
    found = session.scalars(select(SettlementAccount).where(SettlementAccount.id.in_(ids)))
    return {account.id: bank_account_summary(account) for account in found}


def bank_account_summary(account: SettlementAccount) -> BankAccountSummary:
    return BankAccountSummary(
        account_type=AccountType(account.account_type),
        account_id=account.id,
        external_id=account.external_id,
        branch_code=account.branch_code,
        account_number=masked(account.account_number),
        alias=account.alias,
        country_code=account.country_code,
    )


def _firm_ids(session: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, str | None]:
    return dict(session.execute(select(Firm.id, Firm.external_id).where(Firm.id.in_(ids))).all())


def payouts_since(
    session: Session, partner_id: uuid.UUID, since: datetime | None, firm_id: uuid.UUID | None
) -> list[Payout]:
    """This partner's payouts (of one firm, if given) made since ``since`` (default: the
    last 24 hours), oldest first."""
    statement = select(Payout).where(
        Payout.partner_id == partner_id, Payout.created_at >= (since or utcnow() - DEFAULT_SINCE)
    )
    if firm_id is not None:
        statement = statement.where(Payout.firm_id == firm_id)
    return list(session.scalars(statement.order_by(Payout.created_at, Payout.id)))


def search_payouts(session: Session, firm_id: uuid.UUID, query: ListQuery) -> NumberedPage[Payout]:
    """A page of the firm's payouts made within the query's dates, by its filters."""
    statement = select(Payout).where(
        Payout.firm_id == firm_id, Payout.created_at >= query.from_, Payout.created_at <= query.to
    )
    if query.status_filter:
        statement = statement.where(Payout.status.in_(query.status_filter))
    if query.account_id_filter:
        statement = statement.where(Payout.account_id.in_(query.account_id_filter))
    page = numbered_page(
        session,
        statement,
        SORT_FIELDS[query.sort_by],
        Payout.id,
        order=query.order,
        page=query.page,
        page_size=query.page_size,
    )
    return page.map(lambda row: row[0])


# --- the bank files ---------------------------------------------------------------------


@dataclass(frozen=True)
class BankFile:
    """A file the operator uploads to the bank, and the payouts it pays."""

    name: str
    text: str
    payout_ids: list[uuid.UUID]


def export_payouts(session: Session, remitter: Remitter, processing_date: date) -> list[BankFile]:
    """The bank files of every submitted payout not yet exported, which are marked
    exported in this transaction: an ABA file for AUD, a CSV for each other currency. A
    payout is exported once, so that an upload never pays it twice."""
    pending = session.scalars(
        select(Payout)
        .where(Payout.status == PayoutStatus.SUBMITTED, Payout.exported_at.is_(None))
        .order_by(Payout.currency, Payout.created_at, Payout.id)
        .with_for_update()
    ).all()
    accounts = {
        account.id: account
        for account in session.scalars(
            select(SettlementAccount).where(
                SettlementAccount.id.in_({payout.account_id for payout in pending})
            )
        )
    }
    by_currency: dict[str, list[PayoutLine]] = defaultdict(list)
    for payout in pending:
        by_currency[payout.currency].append(_payout_line(payout, accounts[payout.account_id]))
    stamp = f"{processing_date:%Y%m%d}-{utcnow():%H%M%S}"
    files = [
        BankFile(
            f"payouts-{stamp}-{currency}.{'aba' if currency == Currency.AUD else 'csv'}",
            build_aba(lines, remitter, processing_date)
            if currency == Currency.AUD
            else build_payouts_csv(lines, processing_date),
            [line.payout_id for line in lines],
        )
        for currency, lines in sorted(by_currency.items())
    ]
    exported_at = utcnow()
    for payout in pending:
        payout.exported_at = exported_at
    session.flush()
    return files


def _payout_line(payout: Payout, account: SettlementAccount) -> PayoutLine:
    return PayoutLine(
        payout_id=payout.id,
        firm_id=payout.firm_id,
        payout_reference=payout.payout_reference,
        amount_minor=payout.total_minor,
        currency=payout.currency,
        account_name=account.account_name,
        branch_code=account.branch_code,
        account_number=account.account_number,
    )
