"""The hosted payment page: server-rendered HTML, with its own CSS and JS only."""

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from partnerpay.dependencies import SessionDep, UnitOfWorkRoute
from partnerpay.payments.models import PaymentStatus
from partnerpay.payments.service import get_payment
from partnerpay.paypage.service import METHOD_LABELS, page_view, receipt_view
from partnerpay.problems import ProblemError

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

router = APIRouter(
    prefix="/pay", tags=["Payment page"], include_in_schema=False, route_class=UnitOfWorkRoute
)


def render(
    request: Request, template: str, status_code: int = 200, **context: object
) -> HTMLResponse:
    return templates.TemplateResponse(
        request, template, context, status_code=status_code, headers=SECURITY_HEADERS
    )


def not_found_page(request: Request) -> HTMLResponse:
    return render(request, "not_found.html", status_code=404)


@router.get("/{invoice_id}", response_class=HTMLResponse)
def payment_page(request: Request, session: SessionDep, invoice_id: str) -> HTMLResponse:
    try:
        view = page_view(session, invoice_id)
    except ProblemError:
        return not_found_page(request)
    if view is None:
        return not_found_page(request)
    return render(request, "page.html", page=view, method_labels=METHOD_LABELS)


@router.get("/{invoice_id}/receipt/{payment_id}", response_class=HTMLResponse)
def receipt_page(
    request: Request, session: SessionDep, invoice_id: str, payment_id: str
) -> HTMLResponse:
    try:
        payment = get_payment(session, invoice_id, payment_id)
    except ProblemError:
        return not_found_page(request)
    if payment.status == PaymentStatus.FAILED:
        return not_found_page(request)
    return render(request, "receipt.html", receipt=receipt_view(session, payment))
