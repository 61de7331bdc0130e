from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response

from partnerpay.config import GatewayName, Settings
from partnerpay.dependencies import SessionDep, SettingsDep, UnitOfWorkRoute
from partnerpay.limits import RateLimit, rate_limited
from partnerpay.partners.dependencies import PartnerDep
from partnerpay.payments import refunds, service
from partnerpay.payments.gateway import InvalidProcessorEventError, PaymentGateway
from partnerpay.payments.models import PaymentStatus
from partnerpay.payments.schemas import (
    CardSetupResponse,
    NextAction,
    PaymentIn,
    PaymentResponse,
    RefundIn,
    RefundList,
    RefundResponse,
)
from partnerpay.problems import ProblemError, not_found, problem_response, problem_responses
from partnerpay.wire import ModelResponse

pay_router = APIRouter(prefix="/pay", tags=["Payment page"], route_class=UnitOfWorkRoute)


async def get_gateway(request: Request) -> PaymentGateway:
    gateway: PaymentGateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[PaymentGateway, Depends(get_gateway)]


class PaymentAttemptLimits:
    """Payment attempts allowed per client address and per invoice, counted per process:
    against card testing, which tries many cards on one page, or one page after another."""

    def __init__(self, settings: Settings) -> None:
        self.window = settings.payment_attempts_window
        self.limits = tuple(
            (where, count, RateLimit.per_window(count, self.window))
            for where, count in (
                ("from one address", settings.payment_attempts_per_address),
                ("on one invoice", settings.payment_attempts_per_invoice),
            )
        )

    def take(self, address: str, invoice_id: str) -> None:
        """Count an attempt; 429 ``rate_limited`` with ``Retry-After`` past either limit."""
        for (where, count, limit), key in zip(
            self.limits, (address, invoice_id.lower()), strict=True
        ):
            wait = limit.take(key)
            if wait > 0:
                raise rate_limited(
                    wait,
                    f"More than {count} payment attempts {where} in {self.window:g} seconds; "
                    "retry after a pause.",
                )


async def limit_attempts(request: Request, invoice_id: str) -> None:
    """Async: it only counts, in memory, so it needs no worker thread."""
    limits: PaymentAttemptLimits = request.app.state.payment_attempt_limits
    limits.take(request.client.host if request.client else "", invoice_id)


def _answer(taken: service.Taken) -> Response:
    """A payment as the page is answered: a declined one is a 402, returned rather than
    raised so that the request commits the declined attempt and its event."""
    if taken.payment.status == PaymentStatus.FAILED:
        return problem_response(service.decline_problem(taken.payment))
    next_action = (
        NextAction(type="authenticate", client_secret=taken.client_secret)
        if taken.payment.status == PaymentStatus.REQUIRES_ACTION and taken.client_secret
        else None
    )
    payment = service.payment_out(taken.payment)
    return ModelResponse(PaymentResponse(payment=payment, next_action=next_action))


@pay_router.post(
    "/{invoice_id}/card-setup",
    summary="Prepare the processor's card form",
    responses=problem_responses(404, 409, 429, 503),
    response_model=CardSetupResponse,
    dependencies=[Depends(limit_attempts)],
)
def prepare_card(session: SessionDep, gateway: GatewayDep, invoice_id: str) -> ModelResponse:
    """Where the processor's own form collects the card (Stripe Elements), the client
    secret with which it does: the card's number goes from the payer's browser to the
    processor alone. 404 where the page's own fields take the card (the sandbox)."""
    if gateway.card_form is None:
        raise not_found("card setup", invoice_id)
    secret = service.prepare_card(session, invoice_id, gateway)
    return ModelResponse(CardSetupResponse(client_secret=secret))


@pay_router.post(
    "/{invoice_id}/payments",
    summary="Pay an invoice",
    responses=problem_responses(400, 402, 404, 409, 429, 503),
    response_model=PaymentResponse,
    dependencies=[Depends(limit_attempts)],
)
def pay_invoice(
    session: SessionDep,
    settings: SettingsDep,
    gateway: GatewayDep,
    invoice_id: str,
    body: PaymentIn,
) -> Response:
    """The call the payment page makes. A declined card is a 402 whose `type` (and
    `error_context.decline_code`) says why; the same request with the same
    `idempotency_key` again returns the first answer without charging again, and another
    request with it is a 409 `idempotency_key_reused`. Too many attempts from one address
    or on one invoice are a 429 `rate_limited`, and cards are refused for a while on an
    invoice whose cards were declined too often (429 `too_many_declines`); both say when to
    retry in `Retry-After`. A payment the payer must still authenticate (3-D Secure) is
    `RequiresAction` with a `next_action` for the processor's script; the page then calls
    `.../payments/{payment_id}/confirm`. A 503 `gateway_unavailable` means the outcome is
    unknown: retry with the same key."""
    return _answer(service.pay_invoice(session, invoice_id, body, gateway, settings))


@pay_router.post(
    "/{invoice_id}/payments/{payment_id}/confirm",
    summary="Confirm a payment the payer has authenticated",
    responses=problem_responses(402, 404, 503),
    response_model=PaymentResponse,
)
def confirm_payment(
    session: SessionDep,
    settings: SettingsDep,
    gateway: GatewayDep,
    invoice_id: str,
    payment_id: str,
) -> Response:
    """The page's return once the payer has done what the processor asked (3-D Secure):
    the payment as the processor now says it is, so the receipt need not wait for the
    processor's notification. Calling it again changes nothing."""
    taken = service.confirm_payment(session, invoice_id, payment_id, gateway, settings.pay_base_url)
    return _answer(taken)


processor_router = APIRouter(
    prefix="/webhooks", tags=["Processor notifications"], route_class=UnitOfWorkRoute
)


async def raw_body(request: Request) -> bytes:
    """The body as sent: a signature is over its bytes."""
    return await request.body()


@processor_router.post(
    "/stripe",
    summary="Stripe's notifications of payment and refund outcomes",
    responses=problem_responses(400, 404),
)
def stripe_notification(
    session: SessionDep,
    settings: SettingsDep,
    gateway: GatewayDep,
    payload: Annotated[bytes, Depends(raw_body)],
    stripe_signature: Annotated[str | None, Header()] = None,
) -> Response:
    """Register this URL with Stripe (README, "Taking real payments"). The body is
    verified against `Stripe-Signature` with the webhook secret: a bad or missing signature
    is a 400 and changes nothing. Each event is applied once, by its id; the same event
    again is answered 200 and changes nothing."""
    if gateway.name != GatewayName.STRIPE:
        raise not_found("endpoint", "/webhooks/stripe")
    try:
        event = gateway.read_event(payload, stripe_signature)
    except InvalidProcessorEventError as invalid:
        raise ProblemError(
            400,
            "invalid_signature",
            f"Not a notification from Stripe: {invalid}.",
            title="Invalid signature",
        ) from invalid
    service.handle_processor_event(session, gateway, event, settings.pay_base_url)
    return Response(status_code=200)


# The Partner API's refunds (included under /api/v3/partner by the app).
refunds_router = APIRouter(prefix="/payments", tags=["Payments"], route_class=UnitOfWorkRoute)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=refunds.IDEMPOTENCY_HEADER,
        min_length=1,
        max_length=255,
        description="One per refund: the same request with the same key again returns the "
        "refund it made (with `Idempotent-Replayed: true`); another request with it is "
        "409 `idempotency_key_reused`.",
    ),
]


@refunds_router.post(
    "/{payment_id}/refunds",
    summary="Refund a payment",
    status_code=201,
    responses={
        201: {
            "description": "The refund made, or the one this Idempotency-Key made before",
            "headers": {
                "Idempotent-Replayed": {
                    "description": "`true` when the refund was made by an earlier request "
                    "with this Idempotency-Key",
                    "schema": {"type": "string", "enum": ["true"]},
                }
            },
        },
        **problem_responses(400, 404, 409, 503),
    },
    response_model=RefundResponse,
)
def refund_payment(
    session: SessionDep,
    settings: SettingsDep,
    gateway: GatewayDep,
    partner: PartnerDep,
    payment_id: str,
    body: RefundIn,
    idempotency_key: IdempotencyKey = None,
) -> ModelResponse:
    """Give back all or part of a `Successful` payment, through the processor that took
    it, with the matching share of its surcharge. At most what is left to refund of the
    payment (its amount less its refunds that have not failed): more is a 400 naming
    `refund_amount`. A payment recorded as received elsewhere, or not (yet) `Successful`,
    is 409 `payment_not_refundable`. The refund is `Complete` at once, or `Processing`
    until the processor finishes it; `payment.refunded` reports it each time its status is
    set, and `invoice.updated` when it changes what the invoice shows as refunded. Send an
    `Idempotency-Key` so that a retry (after a 503 `gateway_unavailable`, say) refunds
    once."""
    refunded = refunds.refund_payment(
        session, partner.id, payment_id, body, idempotency_key, gateway, settings.pay_base_url
    )
    view = RefundResponse(
        refund=refunds.refund_out(refunded.refund), firm_id=refunded.artifact.firm_id
    )
    headers = {"Idempotent-Replayed": "true"} if refunded.replayed else None
    return ModelResponse(view, status_code=201, headers=headers)


@refunds_router.get(
    "/{payment_id}/refunds",
    summary="List a payment's refunds",
    responses=problem_responses(404),
    response_model=RefundList,
)
def list_refunds(session: SessionDep, partner: PartnerDep, payment_id: str) -> ModelResponse:
    """Every refund of one of this partner's payments, failed ones included, oldest
    first."""
    found = refunds.list_refunds(session, partner.id, payment_id)
    return ModelResponse(RefundList(refunds=[refunds.refund_out(refund) for refund in found]))
