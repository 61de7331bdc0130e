import uuid
from enum import StrEnum

from pydantic import Field

from partnerpay.firms.models import AccountType
from partnerpay.listing import PaginationMetadata
from partnerpay.wire import Timestamp, WireModel


class TransactionStatus(StrEnum):
    """FeeWise's transaction statuses, as partnerpay sets them from the payment's:
    ``Initialised`` waits for the payer (3-D Secure), ``Processing`` for the processor,
    ``Clearing`` is a direct debit not yet cleared, ``Paid`` the client's money received,
    ``Failed`` declined. Whether it has been paid out to the firm is ``payout_id``."""

    INITIALISED = "Initialised"
    PROCESSING = "Processing"
    CLEARING = "Clearing"
    PAID = "Paid"
    FAILED = "Failed"


class TransactionDebtor(WireModel):
    external_id: str | None = None
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None


class CustomerPaymentMethod(WireModel):
    """The card paid with, as FeeWise shows it: its scheme and last four digits."""

    scheme: str | None = None
    scheme_partial_number: str | None = None


class Transaction(WireModel):
    """FeeWise's Transaction (the v3 list and read), with partnerpay's
    ``transaction_id`` and ``fee``."""

    payment_reference: uuid.UUID = Field(description="The payment's id (its receipt's).")
    transaction_id: uuid.UUID
    account_id: uuid.UUID | None = None
    payout_id: uuid.UUID | None = None
    payout_date: Timestamp | None = None
    reference: str = Field(description="The artifact's external id.")
    artifact_id: uuid.UUID
    artifact_type: str
    debtor: TransactionDebtor | None = None
    matter_reference: str | None = None
    matter_description: str | None = None
    payment_date: Timestamp
    customer_payment_method: CustomerPaymentMethod | None = None
    account_alias: str
    account_type: AccountType
    amount: str = Field(description="What the client was charged (gross, surcharge included).")
    currency: str
    fee: str = Field(description="The platform's fee, charged to the firm's Office account.")
    status: TransactionStatus


class TransactionV2(Transaction):
    """FeeWise's TransactionV2 (the v4 list): the surcharge and whether it can be
    refunded."""

    surcharged: bool
    surcharged_amount: str
    refundable: bool


class TransactionsResponse(WireModel):
    transactions: list[Transaction]
    pagination_metadata: PaginationMetadata


class TransactionsResponseV2(WireModel):
    transactions: list[TransactionV2]
    pagination_metadata: PaginationMetadata


class TransactionResponse(WireModel):
    transaction: Transaction
    firm_id: uuid.UUID
