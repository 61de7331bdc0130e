"""Writing the ledger, and reading balances from it.

Entries are written in the transaction of the change that moves the money, by the service
that makes it: a payment's when the gateway has taken it (:func:`record_payment`), a
refund's when it is done or under way and again if it then fails (:func:`follow_refund`),
a payout's by the payout run. The rules (docs/money.md):

- a payment's amount goes to the account its artifact settles to;
- the client's card surcharge goes to the firm's Office account: the artifact's own when
  that is an Office account, else the firm's default Office account;
- the platform's fee is charged to that same Office account, so that Trust money never
  pays a fee: a Trust account only ever receives payments and gives refunds back;
- a refund takes its money from the accounts that received the payment, the surcharge
  share from the one that received the surcharge.
"""

import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import ColumnElement, Uuid, bindparam, exists, func, select
from sqlalchemy.orm import Session

from partnerpay.artifacts.models import Artifact
from partnerpay.firms.models import AccountType, Firm, SettlementAccount
from partnerpay.ledger.models import EntryKind, LedgerEntry, PayoutEntry


class TakenPayment(Protocol):
    """What the ledger reads of a payment the gateway has taken."""

    id: uuid.UUID
    settlement_account_id: uuid.UUID | None
    currency: str
    amount_minor: int
    surcharge_minor: int
    fee_minor: int


class CountedRefund(Protocol):
    """What the ledger reads of a refund."""

    id: uuid.UUID
    payment_id: uuid.UUID
    refund_minor: int
    surcharge_minor: int


def _office_account_of(session: Session, account: SettlementAccount) -> uuid.UUID:
    """The Office account the surcharge and fee of a payment made to ``account`` go to."""
    if account.account_type == AccountType.OFFICE:
        return account.id
    office = session.get_one(Firm, account.firm_id).account(AccountType.OFFICE)
    assert office is not None, "an Active firm has an Office account, and only they take money"
    return office.id


_HAS_ENTRIES = select(exists().where(LedgerEntry.payment_id == bindparam("payment_id", type_=Uuid)))


def record_payment(session: Session, artifact: Artifact, payment: TakenPayment) -> None:
    """The entries of a payment the gateway has taken (succeeded, and so settled): its
    amount, its surcharge and the platform's fee, once. The payments service calls it for
    those only: a payment received elsewhere moved no money through partnerpay."""
    if session.scalar(_HAS_ENTRIES, {"payment_id": payment.id}):
        return
    account = session.get_one(
        SettlementAccount, payment.settlement_account_id or artifact.settlement_account_id
    )
    office = _office_account_of(session, account)
    paid = LedgerEntry(
        firm_id=artifact.firm_id,
        account_id=account.id,
        currency=payment.currency,
        kind=EntryKind.PAYMENT,
        amount_minor=payment.amount_minor,
        payment_id=payment.id,
        artifact_id=artifact.id,
        artifact_type=artifact.artifact_type,
    )
    session.add(paid)
    if payment.surcharge_minor:
        session.add(_like(paid, office, EntryKind.SURCHARGE, payment.surcharge_minor))
    if payment.fee_minor:
        session.add(_like(paid, office, EntryKind.FEE, -payment.fee_minor))


def follow_refund(session: Session, refund: CountedRefund, *, counted: bool) -> None:
    """Bring the ledger to what the refund's status says: a refund ``counted`` (done or
    under way) has taken its money from the accounts that received the payment; one that
    then failed has given it back, with entries of its own (none is ever changed)."""
    written = session.scalars(select(LedgerEntry).where(LedgerEntry.refund_id == refund.id)).all()
    if counted and not written:
        session.add_all(_refund_entries(session, refund))
    elif not counted and sum(entry.amount_minor for entry in written) != 0:
        net: dict[uuid.UUID, int] = defaultdict(int)
        for entry in written:
            net[entry.account_id] += entry.amount_minor
        session.add_all(
            _like(written[0], account_id, EntryKind.REFUND_RETURNED, -amount, refund.id)
            for account_id, amount in net.items()
            if amount
        )


def _refund_entries(session: Session, refund: CountedRefund) -> list[LedgerEntry]:
    """A refund's entries: its amount from the account that received the payment, its
    share of the surcharge from the one that received the surcharge."""
    taken = {
        entry.kind: entry
        for entry in session.scalars(
            select(LedgerEntry).where(
                LedgerEntry.payment_id == refund.payment_id,
                LedgerEntry.kind.in_((EntryKind.PAYMENT, EntryKind.SURCHARGE)),
            )
        )
    }
    paid = taken[EntryKind.PAYMENT]
    entries = [_like(paid, paid.account_id, EntryKind.REFUND, -refund.refund_minor, refund.id)]
    if refund.surcharge_minor:
        surcharged = taken[EntryKind.SURCHARGE].account_id
        entries.append(
            _like(paid, surcharged, EntryKind.REFUND_SURCHARGE, -refund.surcharge_minor, refund.id)
        )
    return entries


def _like(
    entry: LedgerEntry,
    account_id: uuid.UUID,
    kind: EntryKind,
    amount: int,
    refund_id: uuid.UUID | None = None,
) -> LedgerEntry:
    """Another entry of what ``entry`` is about: its firm, currency, payment and artifact."""
    return LedgerEntry(
        firm_id=entry.firm_id,
        account_id=account_id,
        currency=entry.currency,
        kind=kind,
        amount_minor=amount,
        payment_id=entry.payment_id,
        refund_id=refund_id,
        artifact_id=entry.artifact_id,
        artifact_type=entry.artifact_type,
    )


def not_paid_out(account_id: uuid.UUID | None = None) -> list[ColumnElement[bool]]:
    """The conditions of an account's entries not yet paid out (the ``payout`` entries,
    which pay them out, excluded)."""
    conditions: list[ColumnElement[bool]] = [
        LedgerEntry.kind != EntryKind.PAYOUT,
        ~exists().where(PayoutEntry.entry_id == LedgerEntry.id),
    ]
    if account_id is not None:
        conditions.append(LedgerEntry.account_id == account_id)
    return conditions


@dataclass(frozen=True)
class Pending:
    """An account's money not yet paid out: its entries' sum and how many there are."""

    amount_minor: int
    entries: int


def pending(session: Session, account_id: uuid.UUID) -> Pending:
    amount, count = session.execute(
        select(func.coalesce(func.sum(LedgerEntry.amount_minor), 0), func.count()).where(
            *not_paid_out(account_id)
        )
    ).one()
    return Pending(int(amount), int(count))
