import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

from partnerpay.artifacts.models import PaymentMethod
from partnerpay.money import AmountString, Currency, format_minor, to_minor
from partnerpay.payments.gateway import BankAccount, Card
from partnerpay.payments.models import Payment, RefundStatus
from partnerpay.wire import Timestamp, WireModel

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


def _luhn_ok(number: str) -> bool:
    total = 0
    for position, digit in enumerate(reversed(number)):
        value = int(digit) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _card_number(value: object) -> str:
    digits = re.sub(r"[ -]", "", value) if isinstance(value, str) else str(value)
    if not re.fullmatch(r"[0-9]{12,19}", digits) or not _luhn_ok(digits):
        raise PydanticCustomError("invalid_card_number", "is not a valid card number")
    return digits


def _digits(pattern: str, message: str) -> BeforeValidator:
    """Accept a string or a JSON integer of digits (``"12"`` or ``12``), kept as text."""

    def check(value: object) -> str:
        text = (
            str(value).strip()
            if isinstance(value, str | int) and not isinstance(value, bool)
            else ""
        )
        if not re.fullmatch(pattern, text):
            raise PydanticCustomError("invalid_digits", message)
        return text

    return BeforeValidator(check)


CardNumber = Annotated[str, BeforeValidator(_card_number)]
Month = Annotated[str, _digits(r"0?[1-9]|1[0-2]", "must be a month from 1 to 12")]
Year = Annotated[str, _digits(r"[0-9]{2}|[0-9]{4}", "must be a year such as 2030 or 30")]
Cvc = Annotated[str, _digits(r"[0-9]{3,4}", "must be the 3 or 4 digits on the card")]
Bsb = Annotated[str, _digits(r"[0-9]{3}-?[0-9]{3}", "must be a 6-digit BSB such as 062-000")]
AccountNumber = Annotated[str, _digits(r"[0-9]{5,9}", "must be 5 to 9 digits")]


class CardIn(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    number: CardNumber
    exp_month: Month
    exp_year: Year
    cvc: Cvc
    name: Name

    @model_validator(mode="after")
    def _not_expired(self) -> Self:
        if (self.year, int(self.exp_month)) < _this_month():
            raise PydanticCustomError("card_expired", "the card has expired")
        return self

    @property
    def year(self) -> int:
        year = int(self.exp_year)
        return year + 2000 if year < 100 else year

    def to_card(self) -> Card:
        return Card(self.number, int(self.exp_month), self.year, self.cvc, self.name)


def _this_month() -> tuple[int, int]:
    now = datetime.now(UTC)
    return now.year, now.month


class DirectDebitIn(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    account_name: Name
    bsb: Bsb
    account_number: AccountNumber

    def to_account(self) -> BankAccount:
        return BankAccount(self.account_name, self.bsb.replace("-", ""), self.account_number)


class PaymentIn(BaseModel):
    """Pay an invoice from its payment page."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    method: PaymentMethod
    amount: AmountString | None = Field(
        default=None, description="Default: the amount due. Less is a partial payment."
    )
    card: CardIn | None = Field(
        default=None, description="The card's details, where the page's own fields take them."
    )
    card_token: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = Field(
        default=None,
        description="The processor's id of the card its form collected (a Stripe "
        "PaymentMethod), where the processor's form takes the card instead.",
    )
    direct_debit: DirectDebitIn | None = None
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=255)] = Field(
        description="One per attempt to pay: the same request with the same key again "
        "returns the first result; another request with it is 409 idempotency_key_reused."
    )

    def canonical(self) -> dict[str, object]:
        """What makes two requests the same payment (docs/decisions.md): the method, the
        amount as sent (in cents, so ``"10"`` is ``"10.00"``; left out, it is "the amount
        due", whatever that comes to) and the details of the method paid with, as
        validated, less what must not be kept: a card is its brand, last four digits,
        expiry (a two-digit year as 20xx) and name, never its whole number or security
        code; an account its name, BSB and last four digits."""
        form: dict[str, object] = {
            "method": str(self.method),
            "amount_minor": to_minor(self.amount) if self.amount is not None else None,
        }
        if self.card is not None and self.card_token is not None:
            raise PydanticCustomError("card_conflict", "give card or card_token, not both")
        if self.method == PaymentMethod.CARD and self.card is not None:
            card = self.card.to_card()
            form["card"] = {
                "brand": card.brand,
                "last4": card.number[-4:],
                "exp_month": card.exp_month,
                "exp_year": card.exp_year,
                "name": card.name,
            }
        elif self.method == PaymentMethod.CARD:
            form["card_token"] = self.card_token
        elif self.direct_debit is not None:
            account = self.direct_debit.to_account()
            form["direct_debit"] = {
                "account_name": account.account_name,
                "bsb": account.bsb,
                "account_last4": account.account_number[-4:],
            }
        return form

    @model_validator(mode="after")
    def _details_for_the_method(self) -> Self:
        if self.method == PaymentMethod.DIRECT_DEBIT and self.direct_debit is None:
            raise PydanticCustomError(
                "direct_debit_required", "direct_debit details are required to pay by DirectDebit"
            )
        return self


class ExternalPaymentIn(BaseModel):
    """A payment the partner received outside the platform."""

    model_config = ConfigDict(extra="forbid")

    artifact_id: uuid.UUID = Field(description="The invoice paid.")
    amount: AmountString
    external_id: Annotated[str, StringConstraints(min_length=1, max_length=255)] = Field(
        description="The partner's id for the payment; sending the same payment again "
        "records nothing new, another one with this id is 409 idempotency_key_reused."
    )
    payment_type: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    details: Annotated[str, StringConstraints(max_length=2000)] | None = None

    def canonical(self) -> dict[str, object]:
        """What makes two records of one ``external_id`` the same: everything else sent,
        the amount in cents."""
        return {
            "amount_minor": to_minor(self.amount),
            "payment_type": self.payment_type,
            "details": self.details,
        }


class ArtifactPayment(WireModel):
    """A payment as an artifact and a payout show it (FeeWise's Payment): what was
    received of the client, refunded to them, and paid out to the firm for it."""

    transaction_id: uuid.UUID
    payment_id: uuid.UUID
    payment_type: str
    artifact_id: uuid.UUID
    artifact_type: str = "Invoice"
    external_id: str | None = None
    received: str
    refunded: str
    paid_out: str
    currency: Currency
    date: Timestamp

    @classmethod
    def of(cls, payment: Payment, *, refunded_minor: int, paid_out_minor: int) -> Self:
        return cls(
            transaction_id=payment.transaction_id,
            payment_id=payment.id,
            payment_type=payment.payment_type,
            artifact_id=payment.artifact_id,
            artifact_type=payment.artifact_type,
            external_id=payment.external_id,
            received=format_minor(payment.amount_minor),
            refunded=format_minor(refunded_minor),
            paid_out=format_minor(paid_out_minor),
            currency=Currency(payment.currency),
            date=payment.created_at,
        )


class PaymentOut(WireModel):
    payment_id: uuid.UUID
    invoice_id: uuid.UUID
    amount: str
    surcharge: str
    total_charged: str
    currency: Currency
    payment_method: str
    payment_method_detail: str | None = None
    payment_status: str
    decline_code: str | None = None
    external_id: str | None = None
    created_at: Timestamp


class NextAction(WireModel):
    """What the payer must still do, on the page, with the processor's script."""

    type: str = Field(description="`authenticate`: confirm the payment with the processor.")
    client_secret: str


class PaymentResponse(WireModel):
    payment: PaymentOut
    next_action: NextAction | None = None


class CardSetupResponse(WireModel):
    client_secret: str = Field(description="For the processor's form to collect the card.")


class RefundIn(BaseModel):
    """Refund a payment, in whole or in part."""

    model_config = ConfigDict(extra="forbid")

    refund_amount: AmountString = Field(
        description="What to refund of the payment's amount, at most what is left to refund "
        "of it; the share of the payment's surcharge that goes with it is refunded too."
    )
    refund_reason: Annotated[str, StringConstraints(max_length=500)] | None = Field(
        default=None, description="Why the refund is being made."
    )
    firm_notes: Annotated[str, StringConstraints(max_length=2000)] | None = Field(
        default=None, description="The firm's own notes on the refund."
    )

    def canonical(self) -> dict[str, object]:
        """What makes two refund requests the same: everything sent, the amount in cents
        (so ``"10"`` is ``"10.00"``)."""
        return {
            "refund_minor": to_minor(self.refund_amount),
            "refund_reason": self.refund_reason,
            "firm_notes": self.firm_notes,
        }


class RefundOut(WireModel):
    refund_id: uuid.UUID
    payment_id: uuid.UUID
    artifact_id: uuid.UUID
    created_at: Timestamp
    status: RefundStatus
    refund_amount: str = Field(description="What was refunded of the payment's amount.")
    surcharge_amount: str = Field(description="The share of its surcharge refunded with it.")
    refund_reason: str | None = None
    firm_notes: str | None = None


class RefundResponse(WireModel):
    refund: RefundOut
    firm_id: uuid.UUID


class RefundList(WireModel):
    refunds: list[RefundOut] = Field(description="Oldest first.")
