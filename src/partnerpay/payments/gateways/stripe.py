"""The ``stripe`` gateway, on the official ``stripe`` library.

A card is collected and checked by Stripe.js on the page (a SetupIntent confirmed there,
3-D Secure included), so partnerpay sees only the PaymentMethod's id; partnerpay then
creates and confirms the PaymentIntent for the amount due plus surcharge, with our
idempotency key as Stripe's and the payment's ids in its metadata. Every call is made on
the connected account the money settles to (the ``Stripe-Account`` header), so a firm's
Trust money and its Office money land in accounts of their own, never the platform's
(docs/payments.md). Only this module knows Stripe's objects and errors.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import stripe

from partnerpay.artifacts.models import PaymentMethod
from partnerpay.config import STRIPE_JS_URL, GatewayName, Settings
from partnerpay.payments.gateway import (
    CardForm,
    CardToken,
    GatewayUnavailableError,
    InvalidPaymentSourceError,
    InvalidProcessorEventError,
    Outcome,
    OutcomeStatus,
    PaymentOrder,
    PaymentSource,
    ProcessorEvent,
    ProcessorEventKind,
    RefundOrder,
    RefundOutcome,
    RefundOutcomeStatus,
    card_description,
)

logger = logging.getLogger(__name__)

PAYMENT_STATUSES = {
    "succeeded": OutcomeStatus.SUCCEEDED,
    "processing": OutcomeStatus.PROCESSING,
    "requires_action": OutcomeStatus.REQUIRES_ACTION,
    "requires_confirmation": OutcomeStatus.REQUIRES_ACTION,
    "requires_payment_method": OutcomeStatus.DECLINED,
    "canceled": OutcomeStatus.DECLINED,
}
REFUND_STATUSES = {
    "succeeded": RefundOutcomeStatus.SUCCEEDED,
    "pending": RefundOutcomeStatus.PENDING,
    "requires_action": RefundOutcomeStatus.PENDING,
    "failed": RefundOutcomeStatus.FAILED,
    "canceled": RefundOutcomeStatus.FAILED,
}
PAYMENT_EVENTS = ("payment_intent.succeeded", "payment_intent.payment_failed")
REFUND_EVENTS = ("refund.created", "refund.updated", "refund.failed", "charge.refund.updated")
# Where Stripe's own Stripe.js loads its parts and shows 3-D Secure challenges (Stripe's
# Content-Security-Policy guidance); an emulator's script needs its own origin alone.
STRIPE_JS_SUBDOMAINS = "https://*.js.stripe.com"
STRIPE_HOOKS_ORIGIN = "https://hooks.stripe.com"
BRANDS = {
    "visa": "Visa",
    "mastercard": "Mastercard",
    "amex": "American Express",
    "discover": "Discover",
    "diners": "Diners Club",
    "jcb": "JCB",
    "unionpay": "UnionPay",
}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _card_form(settings: Settings) -> CardForm:
    script, api = _origin(settings.stripe_js_url), _origin(settings.stripe_api_base)
    stripes = settings.stripe_js_url == STRIPE_JS_URL
    subdomains = (STRIPE_JS_SUBDOMAINS,) if stripes else ()
    hooks = (STRIPE_HOOKS_ORIGIN,) if stripes else ()
    return CardForm(
        script_url=settings.stripe_js_url,
        publishable_key=settings.stripe_publishable_key,
        script_origins=(script, *subdomains),
        frame_origins=(script, *subdomains, *hooks),
        connect_origins=tuple(dict.fromkeys((script, api))),
    )


def _options(account: str | None, idempotency_key: str | None = None) -> Any:
    options: dict[str, str] = {}
    if account:
        options["stripe_account"] = account
    if idempotency_key:
        options["idempotency_key"] = idempotency_key
    return options


def _refund_outcome(refund: dict[str, Any]) -> RefundOutcome:
    status = REFUND_STATUSES.get(str(refund["status"]), RefundOutcomeStatus.PENDING)
    return RefundOutcome(status, refund["id"])


def _decline_code(error: dict[str, Any] | None) -> str:
    error = error or {}
    return str(error.get("decline_code") or error.get("code") or "card_declined")


class StripeGateway:
    name = GatewayName.STRIPE.value
    uses_processor_accounts = True
    methods = frozenset({PaymentMethod.CARD})
    """BECS Direct Debit is not offered through Stripe yet: the emulator the suite runs
    cannot exercise it (docs/payments.md)."""

    def __init__(self, settings: Settings, http_client: stripe.HTTPClient | None = None) -> None:
        self.client = stripe.StripeClient(
            settings.stripe_secret_key,
            base_addresses={"api": settings.stripe_api_base},
            http_client=http_client or stripe.RequestsClient(timeout=settings.stripe_timeout),
            max_network_retries=2,
        )
        self.webhook_secret = settings.stripe_webhook_secret
        self.card_form: CardForm | None = _card_form(settings)

    def prepare_card(self, account: str | None) -> str:
        params: Any = {"payment_method_types": ["card"], "usage": "on_session"}
        with _reaching_stripe():
            intent = self.client.v1.setup_intents.create(params=params, options=_options(account))
        return str(intent.client_secret)

    def start_payment(self, order: PaymentOrder, source: PaymentSource) -> Outcome:
        assert isinstance(source, CardToken), "Stripe takes cards collected by Stripe.js"
        detail = self._card_detail(source.token, order.account)
        params: Any = {
            "amount": order.amount_minor,
            "currency": order.currency.lower(),
            "payment_method": source.token,
            "payment_method_types": ["card"],
            "confirm": True,
            "metadata": {
                "partnerpay_payment_id": str(order.payment_id),
                "partnerpay_artifact_id": str(order.artifact_id),
                "partnerpay_artifact_type": order.artifact_type,
                "partnerpay_surcharge_minor": str(order.surcharge_minor),
            },
        }
        try:
            with _reaching_stripe():
                intent = self.client.v1.payment_intents.create(
                    params=params, options=_options(order.account, order.idempotency_key)
                )
        except stripe.CardError as declined:
            answer: Any = declined.json_body or {}
            body: dict[str, Any] = answer.get("error") or {}
            reference = (body.get("payment_intent") or {}).get("id")
            return Outcome(OutcomeStatus.DECLINED, reference, _decline_code(body), detail)
        return self._outcome(intent.to_dict(), detail)

    def payment_outcome(self, reference: str, account: str | None) -> Outcome:
        with _reaching_stripe():
            intent = self.client.v1.payment_intents.retrieve(reference, options=_options(account))
        return self._outcome(intent.to_dict())

    def refund(self, order: RefundOrder) -> RefundOutcome:
        """A Stripe Refund of the PaymentIntent. One Stripe refuses (the charge already
        refunded or disputed there, say) refunded nothing: it is ``FAILED``, not an error,
        and the same key again gets Stripe's same refusal."""
        params: Any = {
            "payment_intent": order.payment_reference,
            "amount": order.amount_minor,
            "metadata": {"partnerpay_refund_id": str(order.refund_id)},
        }
        try:
            with _reaching_stripe():
                refund = self.client.v1.refunds.create(
                    params=params, options=_options(order.account, order.idempotency_key)
                )
        except stripe.InvalidRequestError as refused:
            logger.warning("Stripe refused refund %s: %s", order.refund_id, refused)
            return RefundOutcome(RefundOutcomeStatus.FAILED)
        return _refund_outcome(refund.to_dict())

    def refund_outcome(self, reference: str, account: str | None) -> RefundOutcome:
        with _reaching_stripe():
            refund = self.client.v1.refunds.retrieve(reference, options=_options(account))
        return _refund_outcome(refund.to_dict())

    def read_event(self, payload: bytes, signature: str | None) -> ProcessorEvent:
        if not signature:
            raise InvalidProcessorEventError("the Stripe-Signature header is missing")
        try:
            event = stripe.Webhook.construct_event(payload, signature, self.webhook_secret)
        except (ValueError, stripe.SignatureVerificationError) as invalid:
            raise InvalidProcessorEventError(str(invalid)) from invalid
        thing: dict[str, Any] = event.data.object.to_dict()
        if event.type in PAYMENT_EVENTS:
            return ProcessorEvent(
                event.id,
                ProcessorEventKind.PAYMENT,
                thing["id"],
                payment_outcome=self._outcome(thing),
                metadata=dict(thing.get("metadata") or {}),
            )
        if event.type in REFUND_EVENTS and thing.get("object") == "refund":
            return ProcessorEvent(
                event.id,
                ProcessorEventKind.REFUND,
                thing["id"],
                refund_outcome=_refund_outcome(thing),
                metadata=dict(thing.get("metadata") or {}),
            )
        return ProcessorEvent(event.id, ProcessorEventKind.OTHER)

    def _card_detail(self, payment_method: str, account: str | None) -> str | None:
        try:
            with _reaching_stripe():
                method = self.client.v1.payment_methods.retrieve(
                    payment_method, options=_options(account)
                )
        except stripe.InvalidRequestError as unknown:
            raise InvalidPaymentSourceError(str(unknown)) from unknown
        card = method.card
        if card is None:
            return None
        return card_description(BRANDS.get(card.brand, card.brand.title()), card.last4)

    @staticmethod
    def _outcome(intent: dict[str, Any], detail: str | None = None) -> Outcome:
        status = PAYMENT_STATUSES.get(str(intent["status"]), OutcomeStatus.PROCESSING)
        error = intent.get("last_payment_error")
        return Outcome(
            status,
            intent["id"],
            _decline_code(error) if status == OutcomeStatus.DECLINED else None,
            detail,
            intent.get("client_secret") if status == OutcomeStatus.REQUIRES_ACTION else None,
        )


@contextmanager
def _reaching_stripe() -> Iterator[None]:
    """Turn "Stripe could not be reached, or failed" into :class:`GatewayUnavailableError`; a
    request Stripe refused stays a :class:`stripe.StripeError`."""
    try:
        yield
    except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError) as error:
        raise GatewayUnavailableError(str(error)) from error
