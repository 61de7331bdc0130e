"""Transactions: each payment the platform took (or tried to take) for a firm, with where
its money went and whether it has been paid out. Read-only: payments, their artifacts and
the ledger say everything. A payment recorded as received elsewhere is not a transaction
(no money of it passed through partnerpay)."""

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from partnerpay.artifacts.models import Artifact, PaymentMethod
from partnerpay.firms.models import AccountType, SettlementAccount
from partnerpay.invoices.models import Invoice
from partnerpay.ledger.models import EntryKind, LedgerEntry, Payout, PayoutEntry
from partnerpay.listing import ListQuery
from partnerpay.money import format_minor
from partnerpay.pagination import NumberedPage, numbered_page
from partnerpay.payments.models import REFUNDED_STATUSES, Payment, PaymentStatus, Refund
from partnerpay.problems import not_found
from partnerpay.transactions.schemas import (
    CustomerPaymentMethod,
    Transaction,
    TransactionDebtor,
    TransactionStatus,
    TransactionV2,
)
from partnerpay.wire import parse_id

# Invoices are the only kind of artifact payments are made on yet.
_ARTIFACT = Invoice
_ACCOUNT = func.coalesce(Payment.settlement_account_id, _ARTIFACT.settlement_account_id)

SORT_FIELDS: dict[str, ColumnElement[Any] | InstrumentedAttribute[Any]] = {
    "payment_date": Payment.created_at,
    "amount": Payment.amount_minor + Payment.surcharge_minor,
    "status": Payment.status,
    "account_id": _ACCOUNT,
}

_DIRECT_DEBIT = Payment.method == PaymentMethod.DIRECT_DEBIT
_STATUS_CONDITIONS = {
    TransactionStatus.INITIALISED: Payment.status == PaymentStatus.REQUIRES_ACTION,
    TransactionStatus.PROCESSING: and_(Payment.status == PaymentStatus.PROCESSING, ~_DIRECT_DEBIT),
    TransactionStatus.CLEARING: and_(Payment.status == PaymentStatus.PROCESSING, _DIRECT_DEBIT),
    TransactionStatus.PAID: Payment.status == PaymentStatus.SUCCESSFUL,
    TransactionStatus.FAILED: Payment.status == PaymentStatus.FAILED,
}


def transaction_status(payment: Payment) -> TransactionStatus:
    if payment.status == PaymentStatus.PROCESSING:
        clearing = payment.method == PaymentMethod.DIRECT_DEBIT
        return TransactionStatus.CLEARING if clearing else TransactionStatus.PROCESSING
    return {
        PaymentStatus.REQUIRES_ACTION: TransactionStatus.INITIALISED,
        PaymentStatus.SUCCESSFUL: TransactionStatus.PAID,
        PaymentStatus.FAILED: TransactionStatus.FAILED,
    }[PaymentStatus(payment.status)]


def _transactions() -> Select[Payment, Invoice]:
    return (
        select(Payment, _ARTIFACT)
        .join(_ARTIFACT, _ARTIFACT.id == Payment.artifact_id)
        .where(Payment.gateway.is_not(None))
    )


def search_transactions(
    session: Session, firm_id: uuid.UUID, query: ListQuery
) -> NumberedPage[tuple[Payment, Artifact]]:
    """A page of the firm's transactions made within the query's dates, by its filters."""
    statement = _transactions().where(
        _ARTIFACT.firm_id == firm_id,
        Payment.created_at >= query.from_,
        Payment.created_at <= query.to,
    )
    if query.status_filter:
        statement = statement.where(
            or_(*(_STATUS_CONDITIONS[TransactionStatus(s)] for s in query.status_filter))
        )
    if query.account_id_filter:
        statement = statement.where(_ACCOUNT.in_(query.account_id_filter))
    page = numbered_page(
        session,
        statement,
        SORT_FIELDS[query.sort_by],
        Payment.id,
        order=query.order,
        page=query.page,
        page_size=query.page_size,
    )
    return page.map(lambda row: (row[0], row[1]))


def get_transaction(
    session: Session, partner_id: uuid.UUID, transaction_id: str
) -> tuple[Payment, Artifact]:
    """One of this partner's transactions, by its ``transaction_id`` or its payment's id
    (``payment_reference``); another partner's is as unknown as a missing one."""
    wanted = parse_id(transaction_id, "transaction")
    row = session.execute(
        _transactions().where(
            or_(Payment.transaction_id == wanted, Payment.id == wanted),
            _ARTIFACT.partner_id == partner_id,
        )
    ).first()
    if row is None:
        raise not_found("transaction", transaction_id)
    return row[0], row[1]


@dataclass(frozen=True)
class _Facts:
    """What the ledger, the refunds and the accounts say of a page of payments."""

    payouts: dict[uuid.UUID, Payout]
    refunded: dict[uuid.UUID, int]
    accounts: dict[uuid.UUID, SettlementAccount]


def _facts(session: Session, rows: list[tuple[Payment, Artifact]]) -> _Facts:
    ids = [payment.id for payment, _ in rows]
    payouts = session.execute(
        select(LedgerEntry.payment_id, Payout)
        .join(PayoutEntry, PayoutEntry.entry_id == LedgerEntry.id)
        .join(Payout, Payout.id == PayoutEntry.payout_id)
        .where(LedgerEntry.payment_id.in_(ids), LedgerEntry.kind == EntryKind.PAYMENT)
    ).all()
    refunded = session.execute(
        select(Refund.payment_id, func.sum(Refund.refund_minor))
        .where(Refund.payment_id.in_(ids), Refund.status.in_(REFUNDED_STATUSES))
        .group_by(Refund.payment_id)
    ).all()
    account_ids = {_account_id(payment, artifact) for payment, artifact in rows}
    accounts = session.scalars(
        select(SettlementAccount).where(SettlementAccount.id.in_(account_ids))
    )
    return _Facts(
        payouts={payment_id: payout for payment_id, payout in payouts if payment_id},
        refunded={payment_id: int(total) for payment_id, total in refunded},
        accounts={account.id: account for account in accounts},
    )


def _account_id(payment: Payment, artifact: Artifact) -> uuid.UUID:
    return payment.settlement_account_id or artifact.settlement_account_id


def _card(payment: Payment) -> CustomerPaymentMethod | None:
    """The card's scheme and last four, from the description the gateway gave it."""
    if payment.method != PaymentMethod.CARD or not payment.method_detail:
        return None
    scheme, _, last4 = payment.method_detail.partition(" •••• ")
    return CustomerPaymentMethod(scheme=scheme or None, scheme_partial_number=last4 or None)


def _fields(payment: Payment, artifact: Artifact, facts: _Facts) -> dict[str, Any]:
    account = facts.accounts[_account_id(payment, artifact)]
    payout = facts.payouts.get(payment.id)
    matter = artifact.matter or {}
    return {
        "payment_reference": payment.id,
        "transaction_id": payment.transaction_id,
        "account_id": account.id,
        "payout_id": payout.id if payout else None,
        "payout_date": payout.created_at if payout else None,
        "reference": artifact.external_id,
        "artifact_id": artifact.id,
        "artifact_type": artifact.artifact_type,
        "debtor": TransactionDebtor.model_validate(artifact.debtor) if artifact.debtor else None,
        "matter_reference": matter.get("external_reference") or matter.get("external_id"),
        "matter_description": matter.get("description"),
        "payment_date": payment.created_at,
        "customer_payment_method": _card(payment),
        "account_alias": account.alias or account.account_name,
        "account_type": AccountType(account.account_type),
        "amount": format_minor(payment.total_minor),
        "currency": payment.currency,
        "fee": format_minor(payment.fee_minor),
        "status": transaction_status(payment),
    }


def transactions_out(session: Session, rows: list[tuple[Payment, Artifact]]) -> list[Transaction]:
    facts = _facts(session, rows)
    return [Transaction(**_fields(payment, artifact, facts)) for payment, artifact in rows]


def transactions_v2_out(
    session: Session, rows: list[tuple[Payment, Artifact]]
) -> list[TransactionV2]:
    facts = _facts(session, rows)
    return [
        TransactionV2(
            **_fields(payment, artifact, facts),
            surcharged=payment.surcharge_minor > 0,
            surcharged_amount=format_minor(payment.surcharge_minor),
            refundable=payment.status == PaymentStatus.SUCCESSFUL
            and facts.refunded.get(payment.id, 0) < payment.amount_minor,
        )
        for payment, artifact in rows
    ]
