"""The built-in ``sandbox`` gateway.

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

from partnerpay.payments.gateways.base import BankAccount, Card, ChargeResult, ChargeStatus

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
