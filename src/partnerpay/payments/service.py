"""Payments: the payer's card or direct debit, the partner's outside payments, settlement.

A payment is made on an artifact (an invoice), reached through its kind
(:mod:`partnerpay.artifacts.kinds`) and brought up to date by the artifact core
(:func:`partnerpay.artifacts.service.apply_payment`): this module never sets an artifact's
status or what it was paid. Every payment locks its artifact's row first, so concurrent
payments are taken one at a time and can never together exceed the amount due; an
idempotency key per attempt (unique per artifact) makes a double-clicked Pay button charge
once, and the request's fingerprint kept with it tells that retry from another request
sent with the same key.
"""

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from partnerpay.artifacts import service as artifacts
from partnerpay.artifacts.kinds import kind_of
from partnerpay.artifacts.models import Artifact, ArtifactType, PaymentMethod, SurchargeChoice
from partnerpay.config import Settings
from partnerpay.db import utcnow
from partnerpay.events.models import Topic
from partnerpay.events.outbox import emit_event
from partnerpay.firms.models import Firm
from partnerpay.money import format_minor, percent_of, to_minor
from partnerpay.payments.fingerprints import fingerprint
from partnerpay.payments.gateways.base import ChargeResult, ChargeStatus, PaymentGateway
from partnerpay.payments.models import ACCEPTED_STATUSES, Payment, PaymentStatus
from partnerpay.payments.schemas import ExternalPaymentIn, PaymentIn, PaymentOut
from partnerpay.problems import FieldError, ProblemError, invalid_field, not_found
from partnerpay.wire import parse_id

DEFAULT_METHODS = (PaymentMethod.CARD, PaymentMethod.DIRECT_DEBIT)
EXTERNAL_METHOD = "External"
MINIMUM_SURCHARGE_MINOR = 1


def allowed_methods(invoice: Artifact) -> list[PaymentMethod]:
    return [PaymentMethod(m) for m in invoice.payment_methods_override or DEFAULT_METHODS]


def payer_bears_surcharge(invoice: Artifact, firm: Firm) -> bool:
    choice = invoice.surcharge_choice_override
    if choice == SurchargeChoice.MERCHANT:
        return False
    return choice == SurchargeChoice.CUSTOMER or firm.surcharge_enabled


def card_surcharge_minor(invoice: Artifact, firm: Firm, amount_minor: int) -> int:
    """The card surcharge the payer pays on top of one charge of ``amount_minor``, if any.

    Each charge is surcharged on its own, as a card processor fees each transaction: the
    firm's percentage of it, rounded half up to the cent, and never less than a cent while
    the percentage and the charge are above zero. So paying in parts never surcharges less
    than paying at once (three charges of 0.33 at 1.2345% pay 0.01 each)."""
    if not payer_bears_surcharge(invoice, firm) or amount_minor <= 0:
        return 0
    if Decimal(firm.surcharge_percent) == 0:
        return 0
    return max(percent_of(amount_minor, firm.surcharge_percent), MINIMUM_SURCHARGE_MINOR)


def is_payable(invoice: Artifact, firm: Firm) -> bool:
    return artifacts.is_payable(invoice, firm.status)


def payment_out(payment: Payment) -> PaymentOut:
    return PaymentOut(
        payment_id=payment.id,
        invoice_id=payment.artifact_id,
        amount=format_minor(payment.amount_minor),
        surcharge=format_minor(payment.surcharge_minor),
        total_charged=format_minor(payment.total_minor),
        currency=payment.currency,
        payment_method=payment.method,
        payment_method_detail=payment.method_detail,
        payment_status=payment.status,
        decline_code=payment.decline_code,
        external_id=payment.external_id,
        created_at=payment.created_at,
    )


def decline_problem(payment: Payment) -> ProblemError:
    code = payment.decline_code or "card_declined"
    reasons = {"insufficient_funds": "The card has insufficient funds."}
    error = ProblemError(
        402,
        code,
        reasons.get(code, "The card was declined.") + " Try another card or payment method.",
        title="Payment declined",
    )
    error.problem.error_context.decline_code = code
    return error


@dataclass(frozen=True)
class Charge:
    """What the payer asked for, checked against the invoice."""

    method: PaymentMethod
    amount_minor: int
    surcharge_minor: int
    detail: str
    run: Callable[[PaymentGateway], ChargeResult]


def _charge(invoice: Artifact, firm: Firm, data: PaymentIn) -> Charge:
    if data.method not in allowed_methods(invoice):
        raise invalid_field(
            "method", f"{data.method} is not accepted for this invoice", "method_not_allowed"
        )
    amount_minor = to_minor(data.amount) if data.amount else invoice.amount_due_minor
    artifacts.require_within_due(invoice, amount_minor)
    currency = invoice.currency
    key = data.idempotency_key
    if data.card is not None and data.method == PaymentMethod.CARD:
        card = data.card.to_card()
        surcharge = card_surcharge_minor(invoice, firm, amount_minor)
        total = amount_minor + surcharge
        return Charge(
            data.method,
            amount_minor,
            surcharge,
            card.description,
            lambda gateway: gateway.charge_card(card, total, currency, key),
        )
    assert data.direct_debit is not None  # PaymentIn requires the details of its method
    account = data.direct_debit.to_account()
    return Charge(
        data.method,
        amount_minor,
        0,
        account.description,
        lambda gateway: gateway.debit_account(account, amount_minor, currency, key),
    )


@dataclass(frozen=True)
class Attempt:
    """How a request names its attempt: the key stored on the payment, the field and value
    the caller sent it as, and the request's fingerprint."""

    key: str
    field: str
    sent: str
    fingerprint: str


def _key_reused(attempt: Attempt) -> ProblemError:
    message = (
        f"'{attempt.sent}' was already used for a different request on this invoice; "
        f"a retry must repeat that request, and a new payment needs a new {attempt.field}"
    )
    return ProblemError(
        409,
        "idempotency_key_reused",
        f"{attempt.field}: {message}.",
        title="Idempotency key reused",
        fields=[FieldError(field=attempt.field, message=message)],
    )


def _earlier_attempt(session: Session, invoice: Artifact, attempt: Attempt) -> Payment | None:
    """The payment this attempt's key made on this artifact before, if any; 409 if it was
    made by another request. A payment kept from before fingerprints has none, and any
    request with its key is taken as its retry."""
    earlier = session.scalars(
        select(Payment).where(
            Payment.artifact_id == invoice.id, Payment.idempotency_key == attempt.key
        )
    ).one_or_none()
    if earlier is not None and earlier.request_fingerprint not in (None, attempt.fingerprint):
        raise _key_reused(attempt)
    return earlier


def _require_no_cooling_off(session: Session, invoice: Artifact, settings: Settings) -> None:
    """429 ``too_many_declines`` while the invoice's last ``card_declines_limit`` declines
    all fall within ``card_declines_window``: someone may be testing stolen cards on it.

    Counted in the database, under the invoice's lock, so it holds across processes and
    hosts; an attempt it refuses reaches no gateway and writes nothing, so the partner gets
    at most that many ``payment.failed`` events per window."""
    limit = settings.card_declines_limit
    if not limit:
        return
    now, window = utcnow(), timedelta(seconds=settings.card_declines_window)
    recent = session.scalars(
        select(Payment.created_at)
        .where(
            Payment.artifact_id == invoice.id,
            Payment.status == PaymentStatus.FAILED,
            Payment.created_at > now - window,
        )
        .order_by(Payment.created_at.desc())
        .limit(limit)
    ).all()
    if len(recent) < limit:
        return
    wait = max(math.ceil((recent[-1] + window - now).total_seconds()), 1)
    raise ProblemError(
        429,
        "too_many_declines",
        f"Cards were declined {limit} times on this invoice within "
        f"{settings.card_declines_window:g} seconds, so it takes no card for {wait} seconds; "
        "pay by another method or try again later.",
        title="Too many declined cards",
        headers={"Retry-After": str(wait)},
    )


def pay_invoice(
    session: Session,
    invoice_id: str,
    data: PaymentIn,
    gateway: PaymentGateway,
    settings: Settings,
) -> Payment:
    """Charge the payer. A declined charge is recorded and reported (a ``Failed`` payment
    and its ``payment.failed`` event) and returned, like a retry of one: the caller answers
    it with :func:`decline_problem`'s 402 after the request commits, so the decline is kept
    although the answer is an error."""
    invoice: Artifact = artifacts.locked(session, kind_of(ArtifactType.INVOICE), invoice_id)
    key = data.idempotency_key
    attempt = Attempt(key, "idempotency_key", key, fingerprint(data.canonical()))
    earlier = _earlier_attempt(session, invoice, attempt)
    if earlier is not None:
        return earlier
    firm = session.get_one(Firm, invoice.firm_id)
    artifacts.require_payable(invoice, firm.status)
    charge = _charge(invoice, firm, data)
    if charge.method == PaymentMethod.CARD:
        _require_no_cooling_off(session, invoice, settings)
    result = charge.run(gateway)
    payment = Payment(
        artifact_id=invoice.id,
        artifact_type=invoice.artifact_type,
        idempotency_key=key,
        request_fingerprint=attempt.fingerprint,
        method=charge.method,
        payment_type=charge.method,
        method_detail=charge.detail,
        amount_minor=charge.amount_minor,
        surcharge_minor=charge.surcharge_minor,
        currency=invoice.currency,
        status=_payment_status(result),
        decline_code=result.decline_code,
    )
    session.add(payment)
    if payment.status == PaymentStatus.FAILED:
        _emit_payment(session, invoice, payment, Topic.PAYMENT_FAILED)
        return payment
    _apply_payment(session, invoice, payment, settings.pay_base_url)
    return payment


def _payment_status(result: ChargeResult) -> PaymentStatus:
    return {
        ChargeStatus.SUCCEEDED: PaymentStatus.SUCCESSFUL,
        ChargeStatus.PROCESSING: PaymentStatus.PROCESSING,
        ChargeStatus.DECLINED: PaymentStatus.FAILED,
    }[result.status]


def _emit_payment(session: Session, invoice: Artifact, payment: Payment, topic: Topic) -> None:
    session.flush()
    resource = payment_out(payment).wire()
    emit_event(session, invoice.partner_id, topic, invoice.external_id, resource)


_RECEIVED = select(Payment.amount_minor, Payment.status).where(
    Payment.artifact_id == bindparam("artifact_id"), Payment.status.in_(ACCEPTED_STATUSES)
)


def _received(session: Session, artifact: Artifact) -> artifacts.Received:
    accepted = session.execute(_RECEIVED, {"artifact_id": artifact.id}).all()
    return artifacts.Received(
        amount_minor=sum(amount for amount, _status in accepted),
        clearing=any(status == PaymentStatus.PROCESSING for _amount, status in accepted),
    )


def _apply_payment(
    session: Session, artifact: Artifact, payment: Payment, pay_base_url: str
) -> None:
    """Bring the artifact up to date with its payments, through the artifact core, and
    report both changes."""
    session.flush()
    artifacts.apply_payment(artifact, _received(session, artifact))
    if payment.status == PaymentStatus.SUCCESSFUL:
        _emit_payment(session, artifact, payment, Topic.PAYMENT_SUCCEEDED)
    artifacts.report_change(session, artifact, pay_base_url)


def record_external_payment(
    session: Session, partner_id: uuid.UUID, data: ExternalPaymentIn, settings: Settings
) -> tuple[Payment, Artifact]:
    """Record money the partner received elsewhere; the same payment again (the same
    ``external_id`` and the same details) is a no-op."""
    kind = kind_of(ArtifactType.INVOICE)  # the only kind an outside payment is made on yet
    invoice: Artifact = artifacts.locked_for_partner(session, kind, partner_id, data.artifact_id)
    attempt = Attempt(
        f"external:{data.external_id}",
        "external_id",
        data.external_id,
        fingerprint(data.canonical()),
    )
    earlier = _earlier_attempt(session, invoice, attempt)
    if earlier is not None:
        return earlier, invoice
    artifacts.require_payable(invoice, session.get_one(Firm, invoice.firm_id).status)
    amount_minor = to_minor(data.amount)
    artifacts.require_within_due(invoice, amount_minor)
    payment = Payment(
        artifact_id=invoice.id,
        artifact_type=invoice.artifact_type,
        idempotency_key=attempt.key,
        request_fingerprint=attempt.fingerprint,
        method=EXTERNAL_METHOD,
        payment_type=data.payment_type,
        amount_minor=amount_minor,
        currency=invoice.currency,
        status=PaymentStatus.SUCCESSFUL,
        external_id=data.external_id,
        details=data.details,
        settled_at=utcnow(),
    )
    session.add(payment)
    _apply_payment(session, invoice, payment, settings.pay_base_url)
    return payment, invoice


def processing_payment_ids(session: Session) -> list[uuid.UUID]:
    """The direct debits still clearing."""
    return list(
        session.scalars(select(Payment.id).where(Payment.status == PaymentStatus.PROCESSING))
    )


def settle_payment(session: Session, payment_id: uuid.UUID, pay_base_url: str) -> bool:
    """Settle a direct debit still clearing (the sandbox's bank says yes to all); ``False``
    if it is no longer clearing (a concurrent run settled it)."""
    payment = session.get_one(Payment, payment_id)
    artifact = artifacts.locked(session, kind_of(payment.artifact_type), payment.artifact_id)
    session.refresh(payment, with_for_update=True)
    if payment.status != PaymentStatus.PROCESSING:
        return False
    payment.status, payment.settled_at = PaymentStatus.SUCCESSFUL, utcnow()
    _apply_payment(session, artifact, payment, pay_base_url)
    return True


def get_payment(session: Session, invoice_id: str, payment_id: str) -> Payment:
    payment = session.get(Payment, parse_id(payment_id, "payment"))
    if payment is None or str(payment.artifact_id) != str(parse_id(invoice_id, "invoice")):
        raise not_found("payment", payment_id)
    return payment
