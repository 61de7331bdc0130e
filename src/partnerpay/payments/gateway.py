"""The payment gateway interface, and the built-in ``sandbox`` gateway.

The sandbox behaves like a card processor's test mode:

============================  ====================================
card number                   result
============================  ====================================
``4242 4242 4242 4242``       succeeds
``4000 0000 0000 0002``       declined (``card_declined``)
``4000 0000 0000 9995``       declined (``insufficient_funds``)
any other valid number        succeeds
============================  ====================================

Direct debits are accepted as ``Processing`` and settle later
(``partnerpay admin settle-payments``).
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class ChargeStatus(StrEnum):
    SUCCEEDED = "succeeded"
    PROCESSING = "processing"
    DECLINED = "declined"


@dataclass(frozen=True)
class Card:
    number: str
    exp_month: int
    exp_year: int
    cvc: str
    name: str

    @property
    def brand(self) -> str:
        if self.number.startswith("4"):
            return "Visa"
        if self.number[:2] in {"34", "37"}:
            return "American Express"
        if "51" <= self.number[:2] <= "55" or "2221" <= self.number[:4] <= "2720":
            return "Mastercard"
        return "Card"

    @property
    def description(self) -> str:
        return f"{self.brand} •••• {self.number[-4:]}"


@dataclass(frozen=True)
class BankAccount:
    account_name: str
    bsb: str
    account_number: str

    @property
    def description(self) -> str:
        return f"Direct debit •••• {self.account_number[-4:]}"


@dataclass(frozen=True)
class ChargeResult:
    status: ChargeStatus
    decline_code: str | None = None


class PaymentGateway(Protocol):
    """Moves the money. Calls are made with an idempotency key the gateway may use to
    recognise a retry."""

    def charge_card(
        self, card: Card, amount_minor: int, currency: str, idempotency_key: str
    ) -> ChargeResult: ...

    def debit_account(
        self, account: BankAccount, amount_minor: int, currency: str, idempotency_key: str
    ) -> ChargeResult: ...


SANDBOX_DECLINES = {
    "4000000000000002": "card_declined",
    "4000000000009995": "insufficient_funds",
}


class SandboxGateway:
    def charge_card(
        self,
        card: Card,
        amount_minor: int,  # noqa: ARG002  (the sandbox charges any amount)
        currency: str,  # noqa: ARG002
        idempotency_key: str,  # noqa: ARG002
    ) -> ChargeResult:
        decline_code = SANDBOX_DECLINES.get(card.number)
        if decline_code:
            return ChargeResult(ChargeStatus.DECLINED, decline_code)
        return ChargeResult(ChargeStatus.SUCCEEDED)

    def debit_account(
        self,
        account: BankAccount,  # noqa: ARG002
        amount_minor: int,  # noqa: ARG002
        currency: str,  # noqa: ARG002
        idempotency_key: str,  # noqa: ARG002
    ) -> ChargeResult:
        return ChargeResult(ChargeStatus.PROCESSING)
