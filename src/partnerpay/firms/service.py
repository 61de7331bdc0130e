"""Firms: onboarding by a partner or the operator, and the operator's status moves."""

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Row, Select, Uuid, and_, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from partnerpay.db import table_of, utcnow
from partnerpay.events.models import Topic
from partnerpay.events.outbox import emit_event
from partnerpay.firms.models import AccountType, Firm, FirmStatus, SettlementAccount
from partnerpay.firms.schemas import AccountIn, FirmCreate, FirmOut
from partnerpay.pagination import Page, newest_first_page
from partnerpay.problems import ProblemError, conflict, invalid_field, not_found
from partnerpay.wire import parse_id


def _require_office_account_for(status: FirmStatus, firm_has_office: bool) -> None:
    if status == FirmStatus.ACTIVE and not firm_has_office:
        raise conflict(
            "office_account_required", "A firm cannot become Active without an Office account."
        )


def _account(account_type: AccountType, data: AccountIn) -> SettlementAccount:
    """An account given at onboarding: the firm's first, and so its default, of its type."""
    return SettlementAccount(account_type=account_type, is_default=True, **data.model_dump())


def create_firm(
    session: Session,
    partner_id: uuid.UUID,
    data: FirmCreate,
    *,
    status: FirmStatus = FirmStatus.PENDING,
    firm_id: uuid.UUID | None = None,
) -> Firm:
    _require_office_account_for(status, data.office_account is not None)
    firm = Firm(
        id=firm_id or uuid.uuid4(),
        partner_id=partner_id,
        legal_name=data.legal_name or data.trading_name,
        trading_name=data.trading_name,
        external_id=data.external_id,
        currency=data.currency,
        status=status,
        metadata_=data.metadata,
        surcharge_enabled=data.surcharge_percent is not None,
        surcharge_percent=data.surcharge_percent or "0",
    )
    accounts = [(AccountType.OFFICE, data.office_account), (AccountType.TRUST, data.trust_account)]
    firm.accounts = [_account(kind, account) for kind, account in accounts if account]
    session.add(firm)
    try:
        session.flush()  # the unique constraints decide; the request then rolls back
    except IntegrityError:
        raise conflict(
            "firm_already_exists",
            f"A firm with external_id '{data.external_id}' (or id '{firm.id}') already exists.",
        ) from None
    return firm


def get_firm(
    session: Session, partner_id: uuid.UUID, firm_id: str | uuid.UUID, *, lock: bool = False
) -> Firm:
    """One of this partner's firms (its row locked for this transaction if ``lock``);
    another partner's firm is as unknown as a missing one."""
    parsed_id = parse_id(firm_id, "firm")
    firm = session.get(Firm, parsed_id, with_for_update={"of": Firm} if lock else None)
    if firm is None or firm.partner_id != partner_id:
        raise not_found("firm", firm_id)
    return firm


def list_firms(
    session: Session,
    partner_id: uuid.UUID,
    *,
    external_id: str | None,
    status: FirmStatus | None,
    limit: int,
    cursor: str | None,
) -> Page[Firm]:
    statement = select(Firm).where(Firm.partner_id == partner_id)
    if external_id is not None:
        statement = statement.where(Firm.external_id == external_id)
    if status is not None:
        statement = statement.where(Firm.status == status)
    return newest_first_page(
        session, statement, Firm.created_at, Firm.id, limit=limit, cursor=cursor
    )


def set_firm_status(session: Session, firm_id: str | uuid.UUID, status: FirmStatus) -> Firm:
    """The operator moves a firm; only a firm with an Office account can become Active."""
    firm = session.get(Firm, parse_id(firm_id, "firm"), with_for_update={"of": Firm})
    if firm is None:
        raise not_found("firm", firm_id)
    _require_office_account_for(status, firm.account(AccountType.OFFICE) is not None)
    if firm.status != status:
        firm.status = status
        firm.updated_at = utcnow()
        session.flush()
        resource = FirmOut.of(firm).wire()
        emit_event(session, firm.partner_id, Topic.FIRM_STATUS_UPDATED, firm.external_id, resource)
    return firm


PROCESSOR_ACCOUNT = re.compile(r"[A-Za-z0-9_]{1,255}")


def connect_settlement_account(
    session: Session, account_id: str | uuid.UUID, processor_account: str
) -> SettlementAccount:
    """The operator names the gateway account a settlement account's money is taken into
    (a Stripe connected account, ``acct_...``); one gateway account serves one settlement
    account only, so that Trust and Office money are never pooled."""
    if not PROCESSOR_ACCOUNT.fullmatch(processor_account):
        raise invalid_field(
            "processor_account", "must be the gateway's account id, such as acct_1A2b3C"
        )
    account = session.get(SettlementAccount, parse_id(account_id, "settlement account"))
    if account is None:
        raise not_found("settlement account", account_id)
    taken = session.scalars(
        select(SettlementAccount.id).where(
            SettlementAccount.processor_account == processor_account,
            SettlementAccount.id != account.id,
        )
    ).first()
    if taken is not None:
        raise conflict(
            "processor_account_in_use",
            f"{processor_account} already takes the money of settlement account '{taken}'.",
        )
    account.processor_account = processor_account
    session.flush()
    return account


@dataclass(frozen=True)
class InvoicingTerms:
    """What raising an invoice needs to know of a firm (read with one light query, not
    loaded as a whole firm: a create reads it every time).

    ``accounts`` are the firm's accounts that are not deleted, and ``defaults`` each type's
    default among them. Every other field but ``id`` is the firm's column of that name,
    read by ``INVOICING_TERMS`` under that label: a term is added by adding its field."""

    id: uuid.UUID
    status: str
    currency: str
    accounts: dict[uuid.UUID, AccountType]
    defaults: dict[AccountType, uuid.UUID]

    def account_of_type(self, account_type: AccountType) -> uuid.UUID | None:
        """The type's default account."""
        return self.defaults.get(account_type)

    @classmethod
    def from_rows(cls, firm_id: uuid.UUID, rows: Iterable[Row[Any]]) -> "InvoicingTerms | None":
        """The terms read by ``INVOICING_TERMS`` (or a query built on it: its labels are
        read, whatever else the rows hold), or ``None`` if it found no firm."""
        terms = None
        for row in rows:
            read = row._mapping
            terms = terms or cls(
                firm_id, accounts={}, defaults={}, **{name: read[name] for name in _FIRM_TERMS}
            )
            if read["account_id"] is not None:
                account_type = AccountType(read["account_type"])
                terms.accounts[read["account_id"]] = account_type
                if read["account_is_default"]:
                    terms.defaults[account_type] = read["account_id"]
        return terms


_FIRM_TERMS = tuple(
    f.name for f in fields(InvoicingTerms) if f.name not in ("id", "accounts", "defaults")
)


def _invoicing_terms() -> Select[Any]:
    """A firm's terms, a row per settlement account not deleted: bound ``firm_id`` and
    ``partner_id``, so that another partner's firm is not found. Plain (Core) columns,
    labelled: the ORM's statement handling is not needed to read a handful of them."""
    firms, accounts = table_of(Firm), table_of(SettlementAccount)
    return (
        select(
            *(firms.c[name].label(name) for name in _FIRM_TERMS),
            accounts.c.id.label("account_id"),
            accounts.c.account_type.label("account_type"),
            accounts.c.is_default.label("account_is_default"),
        )
        .outerjoin(
            accounts, and_(accounts.c.firm_id == firms.c.id, accounts.c.deleted_at.is_(None))
        )
        .where(
            firms.c.id == bindparam("firm_id", type_=Uuid()),
            firms.c.partner_id == bindparam("partner_id", type_=Uuid()),
        )
    )


INVOICING_TERMS = _invoicing_terms()


def require_active(firm: InvoicingTerms) -> None:
    if firm.status != FirmStatus.ACTIVE:
        raise ProblemError(
            409,
            "firm_not_active",
            f"Firm '{firm.id}' is {firm.status}; invoices can only be raised for an Active firm.",
        )
