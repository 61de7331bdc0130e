from typing import Annotated

from fastapi import APIRouter, Depends, Request

from partnerpay.dependencies import SessionDep, SettingsDep
from partnerpay.invoices.schemas import InvoiceOut
from partnerpay.partners.dependencies import PartnerDep
from partnerpay.payments import service
from partnerpay.payments.gateway import PaymentGateway
from partnerpay.payments.schemas import (
    ExternalPaymentIn,
    ExternalPaymentResponse,
    PaymentIn,
    PaymentResponse,
)
from partnerpay.problems import problem_responses
from partnerpay.wire import ModelResponse

PROBLEMS = problem_responses(400, 402, 404, 409)

pay_router = APIRouter(prefix="/pay", tags=["Payment page"])
partner_router = APIRouter(prefix="/payments", tags=["Payments"])


async def get_gateway(request: Request) -> PaymentGateway:
    gateway: PaymentGateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[PaymentGateway, Depends(get_gateway)]


@pay_router.post(
    "/{invoice_id}/payments",
    summary="Pay an invoice",
    responses=PROBLEMS,
    response_model=PaymentResponse,
)
def pay_invoice(
    session: SessionDep,
    settings: SettingsDep,
    gateway: GatewayDep,
    invoice_id: str,
    body: PaymentIn,
) -> ModelResponse:
    """The call the payment page makes. A declined card is a 402 whose `type` (and
    `error_context.decline_code`) says why; the same request with the same
    `idempotency_key` again returns the first answer without charging again, and another
    request with it is a 409 `idempotency_key_reused`."""
    payment = service.pay_invoice(session, invoice_id, body, gateway, settings)
    return ModelResponse(PaymentResponse(payment=service.payment_out(payment)))


@partner_router.post(
    "/external",
    summary="Record an outside payment",
    responses=PROBLEMS,
    response_model=ExternalPaymentResponse,
)
def record_external_payment(
    session: SessionDep, settings: SettingsDep, partner: PartnerDep, body: ExternalPaymentIn
) -> ModelResponse:
    """Record money received outside the platform (cash, bank transfer...) against one of
    this partner's invoices; it lowers `amount_due` like any payment."""
    payment, invoice = service.record_external_payment(session, partner.id, body, settings)
    return ModelResponse(
        ExternalPaymentResponse(
            payment=service.payment_out(payment),
            invoice=InvoiceOut.of(invoice, settings.pay_base_url),
        )
    )
