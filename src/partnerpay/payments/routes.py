from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from partnerpay.config import Settings
from partnerpay.dependencies import SessionDep, SettingsDep, UnitOfWorkRoute
from partnerpay.limits import RateLimit, rate_limited
from partnerpay.payments import service
from partnerpay.payments.gateways.base import PaymentGateway
from partnerpay.payments.models import PaymentStatus
from partnerpay.payments.schemas import PaymentIn, PaymentResponse
from partnerpay.problems import problem_response, problem_responses
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


@pay_router.post(
    "/{invoice_id}/payments",
    summary="Pay an invoice",
    responses=problem_responses(400, 402, 404, 409, 429),
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
    retry in `Retry-After`."""
    payment = service.pay_invoice(session, invoice_id, body, gateway, settings)
    if payment.status == PaymentStatus.FAILED:
        # Returned, not raised: the request commits the declined attempt and its event.
        return problem_response(service.decline_problem(payment))
    return ModelResponse(PaymentResponse(payment=service.payment_out(payment)))
