"""The columns, statuses and parties every payable artifact shares."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from partnerpay.db import Base, new_id, same_instant_as_created_at, utcnow


class ArtifactType(StrEnum):
    """The kinds of payable artifact, as a payment names the one it pays."""

    INVOICE = "Invoice"


class ArtifactStatus(StrEnum):
    DRAFT = "Draft"
    SUBMITTED = "Submitted"
    AUTHORISED = "Authorised"
    PAID = "Paid"
    VOIDED = "Voided"


FINAL_STATUSES = frozenset({ArtifactStatus.PAID, ArtifactStatus.VOIDED})
PAYABLE_STATUSES = frozenset({ArtifactStatus.SUBMITTED, ArtifactStatus.AUTHORISED})


class PaymentMethod(StrEnum):
    CARD = "Card"
    DIRECT_DEBIT = "DirectDebit"


class SurchargeChoice(StrEnum):
    DEFAULT = "Default"
    CUSTOMER = "Customer"
    MERCHANT = "Merchant"


class FirmParty:
    """Kept once per (firm, the partner's external id), with the latest details sent."""

    __table_args__ = (UniqueConstraint("firm_id", "external_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    external_id: Mapped[str] = mapped_column(String(255))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Debtor(FirmParty, Base):
    """A firm's client."""

    __tablename__ = "debtors"


class Matter(FirmParty, Base):
    """A firm's matter (case)."""

    __tablename__ = "matters"


class Artifact:
    """The shared columns of a payable artifact's table (a mixin: each kind keeps a table
    of its own, its columns listed after these).

    ``matter`` and ``debtor`` keep what the artifact was raised with; the shared
    :class:`Matter` and :class:`Debtor` rows they point to hold the latest details.
    ``status``, ``amount_paid_minor`` and ``refunded_minor`` (what of its payments has been
    refunded) are set only by :mod:`partnerpay.artifacts.service`.
    """

    artifact_type: ClassVar[ArtifactType]  # each kind's class says which it is

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    external_id: Mapped[str] = mapped_column(String(255))
    amount: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    amount_paid_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    settlement_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("settlement_accounts.id"))
    settlement_account_type: Mapped[str] = mapped_column(String(16))
    matter_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("matters.id"))
    debtor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("debtors.id"))
    matter: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    debtor: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    payment_methods_override: Mapped[list[str] | None] = mapped_column(JSON)
    surcharge_choice_override: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=same_instant_as_created_at)

    @property
    def amount_due_minor(self) -> int:
        return max(self.amount_minor - self.amount_paid_minor, 0)

    @property
    def clearing(self) -> bool:
        """Whether an accepted payment of this artifact is still clearing (a direct debit
        not yet settled): each kind answers from its payments."""
        raise NotImplementedError
