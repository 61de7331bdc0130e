import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from partnerpay.db import Base, new_id, same_instant_as_created_at, utcnow


class FirmStatus(StrEnum):
    PENDING = "Pending"
    AWAITING = "Awaiting"
    ACTIVE = "Active"
    CLOSED = "Closed"


class AccountType(StrEnum):
    OFFICE = "Office"
    TRUST = "Trust"


class AccountHolderType(StrEnum):
    """Who holds a bank account (Stripe's values, which FeeWise validates accounts with)."""

    COMPANY = "company"
    INDIVIDUAL = "individual"


class AccountStatus(StrEnum):
    """FeeWise's bank account status. FeeWise also has ``Pending`` (awaiting the bank's
    validation) and ``Invalid``; partnerpay validates an account's format only, and an
    account that passes is ``Valid`` at once (docs/decisions.md)."""

    VALID = "Valid"


class Firm(Base):
    """A professional firm a partner raises invoices for."""

    __tablename__ = "firms"
    __table_args__ = (UniqueConstraint("partner_id", "external_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"), index=True)
    legal_name: Mapped[str] = mapped_column(String(200))
    trading_name: Mapped[str] = mapped_column(String(200))
    external_id: Mapped[str | None] = mapped_column(String(255))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    surcharge_enabled: Mapped[bool] = mapped_column(default=False)
    surcharge_percent: Mapped[str] = mapped_column(String(10), default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=same_instant_as_created_at)

    # The firm's bank accounts that are not deleted, each type's default first, then the
    # oldest first: a deleted account's row stays (payments reference it) but is no longer
    # the firm's.
    accounts: Mapped[list["SettlementAccount"]] = relationship(
        back_populates="firm",
        lazy="joined",
        primaryjoin="and_(Firm.id == SettlementAccount.firm_id, "
        "SettlementAccount.deleted_at.is_(None))",
        order_by=lambda: (
            SettlementAccount.account_type,
            SettlementAccount.is_default.desc(),
            SettlementAccount.created_at,
            SettlementAccount.id,
        ),
    )

    def accounts_of_type(self, account_type: AccountType) -> list["SettlementAccount"]:
        """The type's accounts, its default first, then the oldest first."""
        return [a for a in self.accounts if a.account_type == account_type]

    def account(self, account_type: AccountType) -> "SettlementAccount | None":
        """The type's default account, if the firm has an account of that type."""
        return next((a for a in self.accounts_of_type(account_type) if a.is_default), None)


# Among a firm's accounts of a type that are not deleted, one is the default.
ONE_DEFAULT_PER_TYPE = text("is_default AND deleted_at IS NULL")


class SettlementAccount(Base):
    """A bank account a firm is paid into (FeeWise's bank account): an Office or a Trust
    account. A firm may have several of each type, one of them the type's default, which
    invoices naming only the type settle to.

    ``processor_account`` is the gateway's account that money for this bank account is
    taken into and paid out from (a Stripe connected account, ``acct_...``): one per
    settlement account, so that Trust money is never pooled with Office money or the
    platform's. The sandbox needs none.

    Deleting an account sets ``deleted_at``: the row stays, because the artifacts that
    settled to it, and their payments, still name it."""

    __tablename__ = "settlement_accounts"
    __table_args__ = (
        Index(
            "uq_settlement_accounts_default",
            "firm_id",
            "account_type",
            unique=True,
            sqlite_where=ONE_DEFAULT_PER_TYPE,
            postgresql_where=ONE_DEFAULT_PER_TYPE,
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    account_type: Mapped[str] = mapped_column(String(16))
    account_name: Mapped[str] = mapped_column(String(200))
    branch_code: Mapped[str] = mapped_column(String(20))
    account_number: Mapped[str] = mapped_column(String(34))
    country_code: Mapped[str | None] = mapped_column(String(2))
    external_id: Mapped[str | None] = mapped_column(String(255))
    account_holder_type: Mapped[str] = mapped_column(String(16), default=AccountHolderType.COMPANY)
    address: Mapped[str | None] = mapped_column(String(500))
    alias: Mapped[str | None] = mapped_column(String(200))
    bank: Mapped[str | None] = mapped_column(String(200))
    is_default: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default=AccountStatus.VALID)
    processor_account: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=same_instant_as_created_at)
    deleted_at: Mapped[datetime | None]

    firm: Mapped[Firm] = relationship(back_populates="accounts")
