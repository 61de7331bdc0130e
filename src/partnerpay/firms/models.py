import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
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

    accounts: Mapped[list["SettlementAccount"]] = relationship(
        back_populates="firm", lazy="joined", order_by="SettlementAccount.account_type"
    )

    def account(self, account_type: AccountType) -> "SettlementAccount | None":
        return next((a for a in self.accounts if a.account_type == account_type), None)


class SettlementAccount(Base):
    """A bank account a firm is paid into: its Office account, or its Trust account.

    ``processor_account`` is the gateway's account that money for this bank account is
    taken into and paid out from (a Stripe connected account, ``acct_...``): one per
    settlement account, so that Trust money is never pooled with Office money or the
    platform's. The sandbox needs none."""

    __tablename__ = "settlement_accounts"
    __table_args__ = (UniqueConstraint("firm_id", "account_type"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    account_type: Mapped[str] = mapped_column(String(16))
    account_name: Mapped[str] = mapped_column(String(200))
    branch_code: Mapped[str] = mapped_column(String(20))
    account_number: Mapped[str] = mapped_column(String(34))
    country_code: Mapped[str | None] = mapped_column(String(2))
    processor_account: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    firm: Mapped[Firm] = relationship(back_populates="accounts")
