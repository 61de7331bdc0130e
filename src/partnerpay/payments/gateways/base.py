"""The payment gateway interface: what payments ask of whatever moves the money.

A gateway takes a card or a bank account, an amount in minor units, a currency and our
idempotency key, and says what came of it. Nothing processor-specific crosses it.
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
