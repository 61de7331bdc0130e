"""The hosted payment page: server-rendered HTML, with its own CSS and JS only."""

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from partnerpay.dependencies import SessionDep, UnitOfWorkRoute
from partnerpay.payments.gateway import CardForm, PaymentGateway
from partnerpay.payments.models import PaymentStatus
from partnerpay.payments.routes import GatewayDep
from partnerpay.payments.service import get_payment
from partnerpay.paypage.service import METHOD_LABELS, page_view, receipt_view
from partnerpay.problems import ProblemError

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")


def content_security_policy(card_form: CardForm | None) -> str:
    """The page's own scripts, styles and requests only; where the processor's form takes
    the card, its script's origins too, each for the directives it needs alone."""
    script, frame, connect = (
        (card_form.script_origins, card_form.frame_origins, card_form.connect_origins)
        if card_form
        else ((), (), ())
    )
    directives = {
        "default-src": ["'none'"],
        "script-src": ["'self'", *script],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'", *connect],
        "frame-src": list(frame) or None,
        "form-action": ["'self'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(
        f"{name} {' '.join(sources)}" for name, sources in directives.items() if sources
    )


def security_headers(card_form: CardForm | None) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(card_form),
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
    gateway: PaymentGateway = request.app.state.gateway
    headers = security_headers(gateway.card_form)
    return templates.TemplateResponse(
        request, template, context, status_code=status_code, headers=headers
    )


def not_found_page(request: Request) -> HTMLResponse:
    return render(request, "not_found.html", status_code=404)


@router.get("/{invoice_id}", response_class=HTMLResponse)
def payment_page(
    request: Request, session: SessionDep, gateway: GatewayDep, invoice_id: str
) -> HTMLResponse:
    try:
        view = page_view(session, invoice_id, gateway)
    except ProblemError:
        return not_found_page(request)
    if view is None:
        return not_found_page(request)
    return render(
        request, "page.html", page=view, method_labels=METHOD_LABELS, card_form=gateway.card_form
    )


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
