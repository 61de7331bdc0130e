import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from partnerpay.artifacts.models import ArtifactStatus
from partnerpay.dependencies import SessionDep, SettingsDep, UnitOfWorkRoute
from partnerpay.invoices import service
from partnerpay.invoices.models import Invoice
from partnerpay.invoices.schemas import (
    AdjustAmountIn,
    ExternalPaymentResponse,
    InvoiceIn,
    InvoiceList,
    InvoiceOut,
    InvoiceResponse,
)
from partnerpay.pagination import DEFAULT_LIMIT, MAX_LIMIT
from partnerpay.partners.dependencies import PartnerDep
from partnerpay.payments import service as payments
from partnerpay.payments.schemas import ExternalPaymentIn
from partnerpay.problems import problem_responses
from partnerpay.wire import ModelResponse

router = APIRouter(prefix="/invoices", tags=["Invoices"], route_class=UnitOfWorkRoute)
# Outside payments are recorded against an invoice and answered with it, so their route is
# the invoice's (the payments package knows artifacts, not invoices).
payments_router = APIRouter(prefix="/payments", tags=["Payments"], route_class=UnitOfWorkRoute)

PROBLEMS = problem_responses(400, 401, 404, 409)


def _respond(invoice: Invoice, settings: SettingsDep) -> ModelResponse:
    return ModelResponse(InvoiceResponse(invoice=InvoiceOut.of(invoice, settings.pay_base_url)))


@router.post(
    "", summary="Create or update an invoice", responses=PROBLEMS, response_model=InvoiceResponse
)
def upsert_invoice(
    session: SessionDep, settings: SettingsDep, partner: PartnerDep, body: InvoiceIn
) -> ModelResponse:
    """Create an invoice for an `Active` firm, or, when this partner already has an invoice
    with this `firm_id` and `external_id`, replace its content with this body. Sending the
    same body again changes nothing, so a retried POST is harmless."""
    view = service.upsert_invoice(session, partner.id, body, settings.pay_base_url)
    return ModelResponse(InvoiceResponse(invoice=view))


@router.get("", summary="List invoices", responses=PROBLEMS, response_model=InvoiceList)
def list_invoices(
    session: SessionDep,
    settings: SettingsDep,
    partner: PartnerDep,
    firm_id: uuid.UUID | None = None,
    status: ArtifactStatus | None = None,
    external_reference: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> ModelResponse:
    """This partner's invoices, newest first."""
    page = service.list_invoices(
        session,
        partner.id,
        firm_id=firm_id,
        status=status,
        external_reference=external_reference,
        limit=limit,
        cursor=cursor,
    )
    return ModelResponse(
        InvoiceList(
            invoices=[InvoiceOut.of(invoice, settings.pay_base_url) for invoice in page.items],
            has_more=page.has_more,
            next_cursor=page.next_cursor,
        )
    )


@router.get(
    "/firm/{firm_id}/{external_id:path}",
    summary="Get an invoice by external id",
    responses=PROBLEMS,
    response_model=InvoiceResponse,
)
def get_invoice_by_external_id(
    session: SessionDep, settings: SettingsDep, partner: PartnerDep, firm_id: str, external_id: str
) -> ModelResponse:
    invoice = service.get_invoice_by_external_id(session, partner.id, firm_id, external_id)
    return _respond(invoice, settings)


@router.get(
    "/{invoice_id}", summary="Get an invoice", responses=PROBLEMS, response_model=InvoiceResponse
)
def get_invoice(
    session: SessionDep, settings: SettingsDep, partner: PartnerDep, invoice_id: str
) -> ModelResponse:
    return _respond(service.get_invoice(session, partner.id, invoice_id), settings)


@router.post(
    "/{invoice_id}/adjust-amount",
    summary="Change an invoice's amount",
    responses=PROBLEMS,
    response_model=InvoiceResponse,
)
def adjust_amount(
    session: SessionDep,
    settings: SettingsDep,
    partner: PartnerDep,
    invoice_id: str,
    body: AdjustAmountIn,
) -> ModelResponse:
    """Set a new total for an invoice that is neither `Paid` nor `Voided`; it cannot go
    below what has already been paid. Lowered to what has been paid, the invoice is `Paid`
    (`Authorised` until a direct debit still clearing settles)."""
    view = service.adjust_amount(
        session, partner.id, invoice_id, body.new_amount, settings.pay_base_url
    )
    return ModelResponse(InvoiceResponse(invoice=view))


@router.post(
    "/{invoice_id}/void",
    summary="Void an invoice",
    responses=PROBLEMS,
    response_model=InvoiceResponse,
)
def void_invoice(
    session: SessionDep, settings: SettingsDep, partner: PartnerDep, invoice_id: str
) -> ModelResponse:
    """Mark an unpaid invoice `Voided`; its payment page stops taking payments."""
    view = service.void_invoice(session, partner.id, invoice_id, settings.pay_base_url)
    return ModelResponse(InvoiceResponse(invoice=view))


@payments_router.post(
    "/external",
    summary="Record an outside payment",
    responses=problem_responses(400, 402, 404, 409),
    response_model=ExternalPaymentResponse,
)
def record_external_payment(
    session: SessionDep, settings: SettingsDep, partner: PartnerDep, body: ExternalPaymentIn
) -> ModelResponse:
    """Record money received outside the platform (cash, bank transfer...) against one of
    this partner's invoices; it lowers `amount_due` like any payment."""
    payment, invoice = payments.record_external_payment(session, partner.id, body, settings)
    assert isinstance(invoice, Invoice)
    return ModelResponse(
        ExternalPaymentResponse(
            payment=payments.payment_out(payment),
            invoice=InvoiceOut.of(invoice, settings.pay_base_url),
        )
    )
