"""The operator's proof that the ledger is right (``partnerpay admin verify-ledger``).

Checked from the tables themselves, not from anything the code that wrote them believes:

- every account's entries (payouts' own aside) sum to what was paid out of it (its
  payouts' totals) plus what is pending (its entries in no payout);
- every payout's total is the sum of the entries it pays out, all of its account and
  currency, and its own ``payout`` entry takes exactly that total off the account;
- every payment the gateway took has its amount, surcharge and fee in the ledger, to the
  cent, and no other payment has any entry;
- every refund done or under way has taken its amount and surcharge share out, and every
  other refund has nothing out;
- no Trust account holds a surcharge or a fee.
"""

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from partnerpay.firms.models import AccountType, SettlementAccount
from partnerpay.ledger.models import EntryKind, LedgerEntry, Payout, PayoutEntry
from partnerpay.payments.models import REFUNDED_STATUSES, Payment, PaymentStatus, Refund

REFUND_KINDS = (EntryKind.REFUND, EntryKind.REFUND_SURCHARGE, EntryKind.REFUND_RETURNED)


@dataclass(frozen=True)
class AccountBooks:
    """One account's money in one currency, in minor units."""

    account_id: uuid.UUID
    firm_id: uuid.UUID
    account_type: str
    currency: str
    received: int  # every entry but payouts': payments, surcharges, fees and refunds
    paid_out: int  # its payouts' totals
    pending: int  # its entries in no payout

    def wire(self) -> dict[str, Any]:
        return {
            "account_id": str(self.account_id),
            "firm_id": str(self.firm_id),
            "account_type": self.account_type,
            "currency": self.currency,
            "received": self.received,
            "paid_out": self.paid_out,
            "pending": self.pending,
        }


@dataclass
class LedgerReport:
    accounts: list[AccountBooks] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_ledger(session: Session) -> LedgerReport:
    report = LedgerReport(accounts=_books(session))
    for books in report.accounts:
        if books.received != books.paid_out + books.pending:
            report.problems.append(
                f"account {books.account_id} ({books.currency}): entries {books.received} are "
                f"not paid out {books.paid_out} plus pending {books.pending}"
            )
    report.problems += _payout_problems(session)
    report.problems += _payment_problems(session)
    report.problems += _refund_problems(session)
    report.problems += _trust_problems(session)
    return report


def _books(session: Session) -> list[AccountBooks]:
    in_payout = select(PayoutEntry.entry_id).where(PayoutEntry.entry_id == LedgerEntry.id)
    not_payout = LedgerEntry.kind != EntryKind.PAYOUT
    rows = session.execute(
        select(
            LedgerEntry.account_id,
            LedgerEntry.currency,
            func.sum(case((not_payout, LedgerEntry.amount_minor), else_=0)),
            func.sum(case((not_payout & ~in_payout.exists(), LedgerEntry.amount_minor), else_=0)),
        ).group_by(LedgerEntry.account_id, LedgerEntry.currency)
    ).all()
    paid_out = {
        (account_id, currency): int(total)
        for account_id, currency, total in session.execute(
            select(Payout.account_id, Payout.currency, func.sum(Payout.total_minor)).group_by(
                Payout.account_id, Payout.currency
            )
        )
    }
    accounts = {
        account.id: account
        for account in session.scalars(
            select(SettlementAccount).where(SettlementAccount.id.in_({row[0] for row in rows}))
        )
    }
    return [
        AccountBooks(
            account_id=account_id,
            firm_id=accounts[account_id].firm_id,
            account_type=accounts[account_id].account_type,
            currency=currency,
            received=int(received),
            paid_out=paid_out.get((account_id, currency), 0),
            pending=int(pending),
        )
        for account_id, currency, received, pending in sorted(rows, key=lambda r: (str(r[0]), r[1]))
    ]


def _payout_problems(session: Session) -> list[str]:
    members: dict[uuid.UUID, list[tuple[uuid.UUID, str, int]]] = defaultdict(list)
    for payout_id, account_id, currency, amount in session.execute(
        select(
            PayoutEntry.payout_id,
            LedgerEntry.account_id,
            LedgerEntry.currency,
            LedgerEntry.amount_minor,
        ).join(LedgerEntry, LedgerEntry.id == PayoutEntry.entry_id)
    ):
        members[payout_id].append((account_id, currency, amount))
    own = dict(
        session.execute(
            select(LedgerEntry.payout_id, func.sum(LedgerEntry.amount_minor))
            .where(LedgerEntry.kind == EntryKind.PAYOUT)
            .group_by(LedgerEntry.payout_id)
        ).all()
    )
    problems = []
    for payout in session.scalars(select(Payout)):
        paid = members.get(payout.id, [])
        if sum(amount for _, _, amount in paid) != payout.total_minor:
            problems.append(f"payout {payout.id}: its entries do not sum to its total")
        if any((a, c) != (payout.account_id, payout.currency) for a, c, _ in paid):
            problems.append(f"payout {payout.id}: pays out another account's or currency's entry")
        if own.get(payout.id) != -payout.total_minor:
            problems.append(f"payout {payout.id}: its payout entry is not minus its total")
    return problems


def _sums_by(session: Session, key: Any, kinds: tuple[str, ...]) -> dict[tuple[Any, str], int]:
    rows = session.execute(
        select(key, LedgerEntry.kind, func.sum(LedgerEntry.amount_minor))
        .where(key.is_not(None), LedgerEntry.kind.in_(kinds))
        .group_by(key, LedgerEntry.kind)
    )
    return {(row_id, kind): int(total) for row_id, kind, total in rows}


def _payment_problems(session: Session) -> list[str]:
    kinds = (EntryKind.PAYMENT, EntryKind.SURCHARGE, EntryKind.FEE)
    written = _sums_by(session, LedgerEntry.payment_id, kinds)
    problems = []
    seen = set()
    for payment in session.scalars(select(Payment).where(Payment.gateway.is_not(None))):
        taken = payment.status == PaymentStatus.SUCCESSFUL
        expected = {
            EntryKind.PAYMENT: payment.amount_minor if taken else 0,
            EntryKind.SURCHARGE: payment.surcharge_minor if taken else 0,
            EntryKind.FEE: -payment.fee_minor if taken else 0,
        }
        for kind, amount in expected.items():
            seen.add((payment.id, kind))
            if written.get((payment.id, kind), 0) != amount:
                problems.append(f"payment {payment.id}: its {kind} entries are not {amount}")
    problems += [
        f"payment {payment_id}: has {kind} entries but was not taken by a gateway"
        for payment_id, kind in written.keys() - seen
    ]
    return problems


def _refund_problems(session: Session) -> list[str]:
    written: dict[uuid.UUID, int] = defaultdict(int)
    for (refund_id, _kind), total in _sums_by(session, LedgerEntry.refund_id, REFUND_KINDS).items():
        written[refund_id] += total
    problems = []
    for refund in session.scalars(select(Refund)):
        expected = -refund.total_minor if refund.status in REFUNDED_STATUSES else 0
        if written.pop(refund.id, 0) != expected:
            problems.append(f"refund {refund.id}: its entries are not {expected}")
    problems += [f"refund {refund_id}: entries of no refund" for refund_id in written]
    return problems


def _trust_problems(session: Session) -> list[str]:
    rows = session.execute(
        select(LedgerEntry.id, LedgerEntry.kind)
        .join(SettlementAccount, SettlementAccount.id == LedgerEntry.account_id)
        .where(
            SettlementAccount.account_type == AccountType.TRUST,
            LedgerEntry.kind.in_((EntryKind.SURCHARGE, EntryKind.FEE, EntryKind.REFUND_SURCHARGE)),
        )
    )
    return [f"entry {entry_id}: a {kind} on a Trust account" for entry_id, kind in rows]
