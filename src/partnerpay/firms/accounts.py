"""A firm's bank accounts (FeeWise's bank accounts): several of each type, one of them the
type's default, which invoices naming only the type settle to.

Every change locks the firm's row first, so the changes to one firm's accounts are made
one at a time: the checks below (a duplicate, the default, what an account is still used
for) hold until the change commits. Deleting an account keeps its row (``deleted_at``):
payments and the artifacts they paid reference it. Each change is reported through the
outbox (``firm.bank-account.created``, ``.updated``, ``.deleted``), the account number
masked, as the Partner API shows it.

This module builds on :mod:`partnerpay.artifacts` (an account that open artifacts settle
to cannot be deleted, and the replace call moves them), which reaches firms through their
models only.
"""

import uuid

from sqlalchemy.orm import Session

from partnerpay.artifacts import service as artifacts
from partnerpay.artifacts.kinds import kind_of
from partnerpay.db import utcnow
from partnerpay.events.models import Topic
from partnerpay.events.outbox import emit_event
from partnerpay.firms.models import AccountType, Firm, FirmStatus, SettlementAccount
from partnerpay.firms.schemas import BankAccountEvent, BankAccountIn, ReplaceSettlementAccountIn
from partnerpay.firms.service import get_firm
from partnerpay.ledger import service as ledger
from partnerpay.money import format_minor
from partnerpay.problems import ProblemError, conflict, not_found
from partnerpay.wire import parse_id


def _account_of(firm: Firm, account_id: str | uuid.UUID) -> SettlementAccount:
    """One of the firm's accounts; a deleted one, or another firm's, is unknown: 404."""
    parsed_id = parse_id(account_id, "bank account")
    account = next((a for a in firm.accounts if a.id == parsed_id), None)
    if account is None:
        raise not_found("bank account", account_id)
    return account


def _report(session: Session, account: SettlementAccount, topic: Topic) -> None:
    """The event reporting the account as it now is, in the caller's transaction; its
    ``external_id`` is the account's, or else its firm's."""
    session.flush()
    firm = account.firm
    external_id = account.external_id or firm.external_id
    emit_event(session, firm.partner_id, topic, external_id, BankAccountEvent.of(account).wire())


def list_accounts(session: Session, partner_id: uuid.UUID, firm_id: str) -> list[SettlementAccount]:
    """The firm's accounts, each type's default first, then the oldest first."""
    return get_firm(session, partner_id, firm_id).accounts


def get_account(
    session: Session, partner_id: uuid.UUID, firm_id: str, account_id: str
) -> SettlementAccount:
    return _account_of(get_firm(session, partner_id, firm_id), account_id)


def _require_new(firm: Firm, data: BankAccountIn) -> None:
    for account in firm.accounts_of_type(data.account_type):
        if (account.branch_code, account.account_number) == (data.branch_code, data.account_number):
            raise conflict(
                "bank_account_already_exists",
                f"Firm '{firm.id}' already has this {data.account_type} account "
                f"(branch code and account number): '{account.id}'.",
            )


def create_account(
    session: Session, partner_id: uuid.UUID, firm_id: str, data: BankAccountIn
) -> SettlementAccount:
    """A new account for the firm, ``Valid`` at once (its format is all that is checked);
    the first of its type is that type's default."""
    firm = get_firm(session, partner_id, firm_id, lock=True)
    _require_new(firm, data)
    account = SettlementAccount(
        **data.model_dump(), is_default=firm.account(data.account_type) is None
    )
    firm.accounts.append(account)
    _report(session, account, Topic.FIRM_BANK_ACCOUNT_CREATED)
    return account


def set_default(
    session: Session, partner_id: uuid.UUID, firm_id: str, account_id: str
) -> SettlementAccount:
    """Make the account its type's default; the previous default stops being one (both are
    reported). Its default already, nothing changes."""
    firm = get_firm(session, partner_id, firm_id, lock=True)
    account = _account_of(firm, account_id)
    previous = firm.account(AccountType(account.account_type))
    if previous is account:
        return account
    now = utcnow()
    changed = [account]
    if previous is not None:
        previous.is_default, previous.updated_at = False, now
        # Written before the new default is: one default per type, a unique index checks.
        session.flush()
        changed.insert(0, previous)
    account.is_default, account.updated_at = True, now
    for each in changed:
        _report(session, each, Topic.FIRM_BANK_ACCOUNT_UPDATED)
    return account


def _in_use(account: SettlementAccount, reason: str) -> ProblemError:
    return conflict(
        "bank_account_in_use", f"Bank account '{account.id}' cannot be deleted: {reason}."
    )


def require_deletable(session: Session, account: SettlementAccount) -> None:
    """409 ``bank_account_in_use`` unless nothing needs the account any more: every rule
    that keeps an account is here.

    Not while it is its type's default and the firm has others of that type (another
    becomes the default first, so a type with accounts always has one), nor while it is an
    Active firm's only Office account (an Active firm needs one), nor while an artifact
    that is neither paid nor voided settles to it (the replace call moves them), nor while
    money received into it has not all been paid out (or a negative balance is owed)."""
    firm = account.firm
    account_type = AccountType(account.account_type)
    others = [a for a in firm.accounts_of_type(account_type) if a is not account]
    if account.is_default and others:
        raise _in_use(
            account, f"it is the firm's default {account_type} account; make another the default"
        )
    if account_type == AccountType.OFFICE and not others and firm.status == FirmStatus.ACTIVE:
        raise _in_use(account, "it is the only Office account of an Active firm")
    settling = artifacts.open_artifact_settling_to(session, firm.id, account.id)
    if settling is not None:
        raise _in_use(
            account,
            f"{settling.artifact_type} '{settling.id}' ({settling.status}) still settles to it; "
            "move the open ones to another account first",
        )
    owed = ledger.pending(session, account.id).amount_minor
    if owed:
        raise _in_use(
            account, f"{format_minor(abs(owed))} of its money is still to be paid out or owed"
        )


def delete_account(session: Session, partner_id: uuid.UUID, firm_id: str, account_id: str) -> None:
    """Delete the account, keeping its row: it is no longer the firm's, and payments made
    to it still name it."""
    firm = get_firm(session, partner_id, firm_id, lock=True)
    account = _account_of(firm, account_id)
    require_deletable(session, account)
    account.deleted_at = account.updated_at = utcnow()
    _report(session, account, Topic.FIRM_BANK_ACCOUNT_DELETED)


def _new_settlement_account(
    firm: Firm, account: SettlementAccount, new_account_id: uuid.UUID
) -> SettlementAccount:
    """The account artifacts move to: one of the firm's, of the same type; 409
    ``invalid_settlement_account`` otherwise (a deleted one and another firm's included)."""
    new = next((a for a in firm.accounts if a.id == new_account_id), None)
    if new is None or new.account_type != account.account_type:
        raise conflict(
            "invalid_settlement_account",
            f"Firm '{firm.id}' has no {account.account_type} account '{new_account_id}' "
            "for its artifacts to move to.",
        )
    return new


def replace_settlement_account(
    session: Session,
    partner_id: uuid.UUID,
    firm_id: str,
    account_id: str,
    data: ReplaceSettlementAccountIn,
    pay_base_url: str,
) -> int:
    """Move the firm's open artifacts of a type that settle to one account to another of
    the same type (see :func:`partnerpay.artifacts.service.move_to_settlement_account` for
    which move); how many moved."""
    firm = get_firm(session, partner_id, firm_id, lock=True)
    account = _account_of(firm, account_id)
    new = _new_settlement_account(firm, account, data.new_account_id)
    if new is account:
        return 0
    kind = kind_of(data.artifact_type)
    return artifacts.move_to_settlement_account(
        session, kind, firm.id, account.id, new.id, pay_base_url
    )
