"""The built-in ``sandbox`` gateway: a card processor's test mode, moving no money.

============================  ====================================
card number                   result
============================  ====================================
``4242 4242 4242 4242``       succeeds
``4000 0000 0000 0002``       declined (``card_declined``)
``4000 0000 0000 9995``       declined (``insufficient_funds``)
any other valid number        succeeds
============================  ====================================

Cards are typed into partnerpay's own page, so the sandbox is refused in production.
Direct debits are accepted as ``Processing`` and settle later
(``partnerpay admin settle-payments``); refunds succeed at once.
"""

from partnerpay.artifacts.models import PaymentMethod
from partnerpay.config import GatewayName
from partnerpay.payments.gateway import (
    BankAccount,
    Card,
    CardForm,
    InvalidProcessorEventError,
    Outcome,
    OutcomeStatus,
    PaymentOrder,
    PaymentSource,
    ProcessorEvent,
    RefundOrder,
    RefundOutcome,
    RefundOutcomeStatus,
)

SANDBOX_DECLINES = {
    "4000000000000002": "card_declined",
    "4000000000009995": "insufficient_funds",
}


class SandboxGateway:
    name = GatewayName.SANDBOX.value
    uses_processor_accounts = False
    methods = frozenset({PaymentMethod.CARD, PaymentMethod.DIRECT_DEBIT})
    card_form: CardForm | None = None

    def prepare_card(self, account: str | None) -> str:
        raise NotImplementedError("the sandbox takes card details on partnerpay's own page")

    def start_payment(self, order: PaymentOrder, source: PaymentSource) -> Outcome:
        reference = f"sandbox_{order.payment_id.hex}"
        if isinstance(source, BankAccount):
            return Outcome(OutcomeStatus.PROCESSING, reference, method_detail=source.description)
        assert isinstance(source, Card), "payments gives the sandbox the card itself"
        decline_code = SANDBOX_DECLINES.get(source.number)
        status = OutcomeStatus.DECLINED if decline_code else OutcomeStatus.SUCCEEDED
        return Outcome(status, reference, decline_code, source.description)

    def payment_outcome(self, reference: str, account: str | None) -> Outcome:  # noqa: ARG002
        """A sandbox debit clears only when ``settle-payments`` says so."""
        return Outcome(OutcomeStatus.PROCESSING, reference)

    def refund(self, order: RefundOrder) -> RefundOutcome:
        return RefundOutcome(RefundOutcomeStatus.SUCCEEDED, f"sandbox_{order.refund_id.hex}")

    def refund_outcome(self, reference: str, account: str | None) -> RefundOutcome:  # noqa: ARG002
        return RefundOutcome(RefundOutcomeStatus.SUCCEEDED, reference)

    def read_event(self, payload: bytes, signature: str | None) -> ProcessorEvent:  # noqa: ARG002
        raise InvalidProcessorEventError("the sandbox sends no notifications")
