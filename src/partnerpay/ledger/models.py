"""The ledger's tables: entries, the payouts that pay them out, and firms' pricing.

An entry is written once and never changed or deleted (nothing in partnerpay updates
``ledger_entries``): a correction is another entry. A balance is a sum of entries, kept
nowhere else. Which payout an entry was paid out in is recorded beside it, in
``payout_entries``, whose primary key is the entry: an entry is in one payout at most,
whatever runs the payouts and however many of them race."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from partnerpay.db import Base, new_id, same_instant_as_created_at, utcnow


class EntryKind(StrEnum):
    """What moved. Amounts are signed, as the account sees them: money in is positive."""

    PAYMENT = "payment"  # a client's payment, into the account its artifact settles to
    SURCHARGE = "surcharge"  # the card surcharge the client paid, the Office account's
    FEE = "fee"  # the platform's fee for taking a payment, charged to the Office account
    REFUND = "refund"  # money given back of a payment, from the account that received it
    REFUND_SURCHARGE = "refund_surcharge"  # the surcharge given back with it
    REFUND_RETURNED = "refund_returned"  # a counted refund that then failed: its money back
    PAYOUT = "payout"  # money paid out to the firm's bank account


class LedgerEntry(Base):
    """One movement of money on one of a firm's settlement accounts, in minor units.

    ``payment_id`` and ``refund_id`` name what caused it (the payment is named by its
    refunds' entries too), ``artifact_id`` and ``artifact_type`` the artifact it was paid
    on, and ``payout_id`` the payout a ``payout`` entry pays."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index("ix_ledger_entries_account_id", "account_id"),
        Index("ix_ledger_entries_payment_id", "payment_id"),
        Index("ix_ledger_entries_refund_id", "refund_id"),
        Index("ix_ledger_entries_artifact_id", "artifact_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("settlement_accounts.id"))
    currency: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(24))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    payment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payments.id"))
    refund_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("refunds.id"))
    payout_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payouts.id"))
    artifact_id: Mapped[uuid.UUID | None]
    artifact_type: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PayoutEntry(Base):
    """An entry paid out in a payout: the entry is the key, so it is paid out once."""

    __tablename__ = "payout_entries"

    entry_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ledger_entries.id"), primary_key=True)
    payout_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payouts.id"), index=True)


class FirmPricing(Base):
    """The platform's price to a firm for taking a payment by one method: ``percent`` of
    what the client is charged, plus ``fixed_minor``. A firm with no price for a method
    pays no fee for it."""

    __tablename__ = "firm_pricing"

    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"), primary_key=True)
    method: Mapped[str] = mapped_column(String(16), primary_key=True)
    percent: Mapped[str] = mapped_column(String(10))
    fixed_minor: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PayoutStatus(StrEnum):
    """FeeWise's payout statuses. A payout run makes ``Submitted`` payouts; the operator
    marks them ``Paid`` once the bank has paid them. ``Failed`` and ``Cancelled`` are
    reserved (docs/money.md)."""

    NONE = "None"
    SUBMITTED = "Submitted"
    PAID = "Paid"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


class Payout(Base):
    """One settlement account's money, paid out to the firm's bank account in one
    transfer: the entries it pays are in ``payout_entries``, and its own ``payout`` entry
    takes ``total_minor`` off the account's ledger. ``payout_reference`` is what the firm's
    bank statement shows (18 characters at most, the ABA lodgement reference)."""

    __tablename__ = "payouts"
    __table_args__ = (
        Index("ix_payouts_partner_created", "partner_id", "created_at"),
        Index("ix_payouts_firm_created", "firm_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("settlement_accounts.id"))
    payout_reference: Mapped[str] = mapped_column(String(18), unique=True)
    currency: Mapped[str] = mapped_column(String(3))
    total_minor: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    exported_at: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=same_instant_as_created_at)
