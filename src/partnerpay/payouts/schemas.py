import uuid

from pydantic import Field

from partnerpay.firms.models import AccountType
from partnerpay.ledger.models import PayoutStatus
from partnerpay.listing import PaginationMetadata
from partnerpay.money import Currency
from partnerpay.payments.schemas import ArtifactPayment
from partnerpay.wire import Timestamp, WireModel


class BankAccountSummary(WireModel):
    """The account a payout was made to (FeeWise's BankAccountSummary), its number
    masked."""

    account_type: AccountType
    account_id: uuid.UUID
    external_id: str | None = None
    branch_code: str
    account_number: str
    alias: str | None = None
    country_code: str | None = None


class PayoutOut(WireModel):
    """FeeWise's Payout, with partnerpay's ``payout_id`` (which transactions name) and
    ``currency``. ``payout_total`` is the sum of its transactions' ``paid_out``."""

    payout_id: uuid.UUID
    payout_reference: str = Field(description="What the firm's bank statement shows.")
    date: Timestamp
    payout_total: str
    currency: Currency
    account: BankAccountSummary
    firm_id: uuid.UUID
    external_firm_id: str | None = None
    status: PayoutStatus
    transactions: list[ArtifactPayment]
    metadata: dict[str, str] = Field(default_factory=dict)


class PayoutList(WireModel):
    """FeeWise's Payouts."""

    payouts: list[PayoutOut]


class PayoutsResponse(WireModel):
    """FeeWise's PayoutsResponse: a page of payouts."""

    payouts: list[PayoutOut]
    pagination_metadata: PaginationMetadata
