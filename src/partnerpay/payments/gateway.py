"""The payment gateway interface: what payments ask of whatever moves the money.

A gateway starts a payment of an amount (the surcharge included) in a currency, says what
came of it, and refunds it, each idempotent on a key of ours; it reads the processor's own
notifications of outcomes. Nothing processor-specific crosses it: the adapters
(:mod:`partnerpay.payments.gateways`) turn their processor's objects and errors into these.
"""

import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from partnerpay.artifacts.models import PaymentMethod


@dataclass(frozen=True)
class Card:
    """A card as typed into partnerpay's own page (the sandbox's, never production's)."""

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
        return card_description(self.brand, self.number[-4:])


def card_description(brand: str, last4: str) -> str:
    return f"{brand} •••• {last4}"


@dataclass(frozen=True)
class BankAccount:
    account_name: str
    bsb: str
    account_number: str

    @property
    def description(self) -> str:
        return f"Direct debit •••• {self.account_number[-4:]}"


@dataclass(frozen=True)
class CardToken:
    """A card the processor's own script collected on the page: its id at the processor,
    all partnerpay ever sees of it."""

    token: str


PaymentSource = Card | BankAccount | CardToken


@dataclass(frozen=True)
class PaymentOrder:
    """One payment to start: ``amount_minor`` is what the payer is charged, surcharge
    included; ``account`` is the processor account the money settles to (``None`` where the
    gateway has one account only)."""

    payment_id: uuid.UUID
    artifact_id: uuid.UUID
    artifact_type: str
    amount_minor: int
    surcharge_minor: int
    currency: str
    idempotency_key: str
    account: str | None


class OutcomeStatus(StrEnum):
    SUCCEEDED = "succeeded"
    PROCESSING = "processing"
    REQUIRES_ACTION = "requires_action"
    DECLINED = "declined"


@dataclass(frozen=True)
class Outcome:
    """What came of a payment. ``reference`` is the processor's id of it; ``client_secret``
    lets the page complete a payment that ``REQUIRES_ACTION`` of the payer (3-D Secure)."""

    status: OutcomeStatus
    reference: str | None = None
    decline_code: str | None = None
    method_detail: str | None = None
    client_secret: str | None = None


@dataclass(frozen=True)
class RefundOrder:
    refund_id: uuid.UUID
    payment_reference: str | None
    amount_minor: int
    currency: str
    idempotency_key: str
    account: str | None
    reason: str | None = None


class RefundOutcomeStatus(StrEnum):
    SUCCEEDED = "succeeded"
    PENDING = "pending"
    FAILED = "failed"


@dataclass(frozen=True)
class RefundOutcome:
    status: RefundOutcomeStatus
    reference: str | None = None


class ProcessorEventKind(StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"
    OTHER = "other"


@dataclass(frozen=True)
class ProcessorEvent:
    """A notification the processor sent us, verified: its id (unique at the processor),
    what it is about and the outcome it reports. ``metadata`` is what we attached to the
    payment when we started it."""

    id: str
    kind: ProcessorEventKind
    reference: str | None = None
    payment_outcome: Outcome | None = None
    refund_outcome: RefundOutcome | None = None
    metadata: dict[str, str] = field(default_factory=dict)


class InvalidProcessorEventError(Exception):
    """A notification that is not the processor's: a bad or missing signature, or not
    the processor's format."""


class InvalidPaymentSourceError(Exception):
    """What the page sent to pay with is not something the processor knows (a forged or
    another account's card token)."""


class GatewayUnavailableError(Exception):
    """The processor could not be reached or did not answer: the outcome is unknown, and
    the same request with the same key may be retried."""


@dataclass(frozen=True)
class CardForm:
    """How the page collects a card when the processor's own script does it: the script,
    the key it is started with, and the origins it talks to (for the page's
    Content-Security-Policy)."""

    script_url: str
    publishable_key: str
    script_origins: tuple[str, ...]
    frame_origins: tuple[str, ...]
    connect_origins: tuple[str, ...]


class PaymentGateway(Protocol):
    """Moves the money. Every call that changes something carries a key of ours, which the
    processor uses to recognise a retry."""

    name: str
    methods: frozenset[PaymentMethod]
    uses_processor_accounts: bool
    """Whether money is taken into a processor account of each settlement account's own."""
    card_form: CardForm | None
    """``None``: the card is typed into partnerpay's own fields (the sandbox)."""

    def prepare_card(self, account: str | None) -> str:
        """A client secret with which the page's script collects and checks a card."""
        ...

    def start_payment(self, order: PaymentOrder, source: PaymentSource) -> Outcome: ...

    def payment_outcome(self, reference: str, account: str | None) -> Outcome:
        """What has come of a payment started before, asked of the processor."""
        ...

    def refund(self, order: RefundOrder) -> RefundOutcome: ...

    def refund_outcome(self, reference: str, account: str | None) -> RefundOutcome: ...

    def read_event(self, payload: bytes, signature: str | None) -> ProcessorEvent:
        """The processor's notification, verified; raises :class:`InvalidProcessorEventError`."""
        ...
