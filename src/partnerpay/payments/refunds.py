"""Refunds: money a successful payment took, given back through the gateway that took it.

A refund locks its payment's artifact first and then the payment, the order every payment
path locks them in, so concurrent refunds of one payment (or of one artifact's payments)
are taken one at a time and can never together give back more than was paid. What is left
to refund is the payment's amount less every refund of it that has not failed or been
cancelled; each refund takes its share of the payment's surcharge with it
(:func:`surcharge_share`). The artifact's refunded amount is set by the artifact core
(:func:`partnerpay.artifacts.service.apply_refunds`) only; a refund changes neither what
the artifact was paid nor its status.

An ``Idempotency-Key`` names one refund of a payment, as a payment's key names one
attempt: the same request again is answered with the refund it made, another request with
it is a 409. The refund's id is derived from the key, and the processor is asked with a
key made of that id, so a retry after a crash sends the processor the very request it may
already have taken.
"""

import uuid
from dataclasses import dataclass

from sqlalchemy import Uuid, bindparam, func, select
from sqlalchemy.orm import Session

from partnerpay.artifacts import service as artifacts
from partnerpay.artifacts.kinds import kind_of
from partnerpay.artifacts.models import Artifact
from partnerpay.db import utcnow
from partnerpay.events.models import Topic
from partnerpay.events.outbox import emit_event
from partnerpay.ledger import service as ledger
from partnerpay.money import format_minor, share_of, to_minor
from partnerpay.payments.attempts import (
    Attempt,
    gateway_unavailable,
    id_of_event,
    key_reused,
    unsettled_ids,
)
from partnerpay.payments.fingerprints import fingerprint
from partnerpay.payments.gateway import (
    GatewayUnavailableError,
    PaymentGateway,
    ProcessorEvent,
    RefundOrder,
    RefundOutcome,
    RefundOutcomeStatus,
)
from partnerpay.payments.models import (
    REFUNDED_STATUSES,
    UNSETTLED_REFUND_STATUSES,
    VOID_REFUND_STATUSES,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
)
from partnerpay.payments.schemas import RefundIn, RefundOut
from partnerpay.problems import ProblemError, invalid_field, not_found
from partnerpay.wire import parse_id

IDEMPOTENCY_HEADER = "Idempotency-Key"

REFUND_STATUSES = {
    RefundOutcomeStatus.SUCCEEDED: RefundStatus.COMPLETE,
    RefundOutcomeStatus.PENDING: RefundStatus.PROCESSING,
    RefundOutcomeStatus.FAILED: RefundStatus.FAILED,
}


def refund_out(refund: Refund) -> RefundOut:
    return RefundOut(
        refund_id=refund.id,
        payment_id=refund.payment_id,
        artifact_id=refund.artifact_id,
        created_at=refund.created_at,
        status=RefundStatus(refund.status),
        refund_amount=format_minor(refund.refund_minor),
        surcharge_amount=format_minor(refund.surcharge_minor),
        refund_reason=refund.refund_reason,
        firm_notes=refund.firm_notes,
    )


@dataclass(frozen=True)
class Refunded:
    """A refund as it now stands, the artifact of its payment, and whether it was made by
    an earlier request with the same key (a replay)."""

    refund: Refund
    artifact: Artifact
    replayed: bool = False


def refund_id_for(payment_id: uuid.UUID, idempotency_key: str) -> uuid.UUID:
    """The id of the refund a key makes of a payment: derived from the key, so that a
    retry after a crash asks the processor with the same key of ours."""
    return uuid.uuid5(payment_id, idempotency_key)


def _not_refundable(detail: str) -> ProblemError:
    return ProblemError(409, "payment_not_refundable", detail, title="Payment not refundable")


def _partners_payment(session: Session, partner_id: uuid.UUID, payment_id: str) -> Payment:
    """One of this partner's payments, read without locks; another partner's is as
    unknown as a missing one."""
    payment = session.get(Payment, parse_id(payment_id, "payment"))
    if payment is not None:
        model = kind_of(payment.artifact_type).model
        owner = session.scalar(select(model.partner_id).where(model.id == payment.artifact_id))
        if owner == partner_id:
            return payment
    raise not_found("payment", payment_id)


def _locked_for_partner(
    session: Session, partner_id: uuid.UUID, payment_id: str
) -> tuple[Payment, Artifact]:
    """One of this partner's payments and its artifact, both locked (the artifact first);
    a stranger's request locks nothing."""
    payment = _partners_payment(session, partner_id, payment_id)
    artifact: Artifact = artifacts.locked(
        session, kind_of(payment.artifact_type), payment.artifact_id
    )
    session.refresh(payment, with_for_update=True)
    return payment, artifact


def _earlier_refund(session: Session, payment: Payment, attempt: Attempt) -> Refund | None:
    """The refund this key made of this payment before, if any; 409 if another request
    made it."""
    earlier = session.scalars(
        select(Refund).where(Refund.payment_id == payment.id, Refund.idempotency_key == attempt.key)
    ).one_or_none()
    if earlier is not None and earlier.request_fingerprint != attempt.fingerprint:
        raise key_reused(attempt)
    return earlier


def _require_refundable(payment: Payment, gateway: PaymentGateway) -> None:
    """409 ``payment_not_refundable`` unless the payment is one this gateway took and
    that succeeded."""
    if payment.gateway is None:
        raise _not_refundable(
            f"Payment '{payment.id}' was received outside partnerpay ({payment.payment_type}), "
            "so no money of it can be returned through the payment processor; refund it the "
            "way it was paid."
        )
    if payment.status != PaymentStatus.SUCCESSFUL:
        raise _not_refundable(
            f"Payment '{payment.id}' is {payment.status}: only a Successful payment can be "
            "refunded (a direct debit once it has cleared)."
        )
    if payment.gateway != gateway.name or payment.processor_reference is None:
        raise _not_refundable(
            f"Payment '{payment.id}' was taken through the {payment.gateway} gateway, which "
            "this deployment does not use, so it cannot be refunded here."
        )


_HELD = select(Refund.refund_minor, Refund.surcharge_minor).where(
    Refund.payment_id == bindparam("payment_id", type_=Uuid),
    Refund.status.not_in(VOID_REFUND_STATUSES),
)


@dataclass(frozen=True)
class Held:
    """What a payment's refunds that have not failed or been cancelled come to."""

    refund_minor: int
    surcharge_minor: int


def _held(session: Session, payment: Payment) -> Held:
    rows = session.execute(_HELD, {"payment_id": payment.id}).all()
    return Held(sum(row[0] for row in rows), sum(row[1] for row in rows))


def surcharge_share(payment: Payment, refund_minor: int, held: Held) -> int:
    """The part of the payment's surcharge a refund of ``refund_minor`` returns: the
    same proportion of it, rounded half up to the cent, and never more than is left of it.
    The refund that brings what is refunded to the whole payment takes exactly what is
    left, so refunding a payment in full, at once or in parts, returns all its surcharge
    to the cent."""
    left = payment.surcharge_minor - held.surcharge_minor
    if held.refund_minor + refund_minor == payment.amount_minor:
        return left
    return min(share_of(payment.surcharge_minor, refund_minor, payment.amount_minor), left)


def _ask_gateway(gateway: PaymentGateway, order: RefundOrder) -> RefundOutcome:
    try:
        return gateway.refund(order)
    except GatewayUnavailableError as error:
        raise gateway_unavailable(IDEMPOTENCY_HEADER) from error


_REFUNDED = select(func.coalesce(func.sum(Refund.refund_minor), 0)).where(
    Refund.artifact_id == bindparam("artifact_id", type_=Uuid),
    Refund.status.in_(REFUNDED_STATUSES),
)


def _report(session: Session, artifact: Artifact, refund: Refund, pay_base_url: str) -> None:
    """Report a refund made or changed (``payment.refunded``, the refund as it now is),
    bring the ledger up to date with it, and its artifact's refunded amount through the
    artifact core, reporting the artifact too when that changed it."""
    ledger.follow_refund(session, refund, counted=refund.status in REFUNDED_STATUSES)
    session.flush()
    resource = refund_out(refund).wire()
    emit_event(session, artifact.partner_id, Topic.PAYMENT_REFUNDED, artifact.external_id, resource)
    refunded = int(session.scalar(_REFUNDED, {"artifact_id": artifact.id}) or 0)
    if artifacts.apply_refunds(artifact, refunded):
        artifacts.report_change(session, artifact, pay_base_url)


def refund_payment(
    session: Session,
    partner_id: uuid.UUID,
    payment_id: str,
    data: RefundIn,
    idempotency_key: str | None,
    gateway: PaymentGateway,
    pay_base_url: str,
) -> Refunded:
    """Refund one of this partner's payments, in whole or in part, through the gateway
    that took it. The artifact and the payment stay locked while the gateway is asked, so
    concurrent refunds are taken one at a time. A refund the processor refused is kept,
    ``Failed``, and returned like any other."""
    payment, artifact = _locked_for_partner(session, partner_id, payment_id)
    request_fingerprint = fingerprint(data.canonical())
    attempt = None
    if idempotency_key is not None:
        attempt = Attempt(
            idempotency_key,
            IDEMPOTENCY_HEADER,
            idempotency_key,
            request_fingerprint,
            scope="payment",
            makes="refund",
        )
        earlier = _earlier_refund(session, payment, attempt)
        if earlier is not None:
            return Refunded(earlier, artifact, replayed=True)
    _require_refundable(payment, gateway)
    refund_minor = to_minor(data.refund_amount)
    held = _held(session, payment)
    refundable = payment.amount_minor - held.refund_minor
    if refund_minor > refundable:
        raise invalid_field(
            "refund_amount", f"is more than what can be refunded ({format_minor(refundable)})"
        )
    surcharge_minor = surcharge_share(payment, refund_minor, held)
    refund_id = refund_id_for(payment.id, attempt.key) if attempt else uuid.uuid4()
    assert payment.processor_reference is not None  # _require_refundable saw to it
    order = RefundOrder(
        refund_id=refund_id,
        payment_reference=payment.processor_reference,
        amount_minor=refund_minor + surcharge_minor,
        currency=payment.currency,
        idempotency_key=f"partnerpay-refund-{refund_id}",
        account=payment.processor_account,
        reason=data.refund_reason,
    )
    outcome = _ask_gateway(gateway, order)
    refund = Refund(
        id=refund_id,
        payment_id=payment.id,
        artifact_id=payment.artifact_id,
        artifact_type=payment.artifact_type,
        idempotency_key=attempt.key if attempt else None,
        request_fingerprint=request_fingerprint,
        refund_minor=refund_minor,
        surcharge_minor=surcharge_minor,
        refund_reason=data.refund_reason,
        firm_notes=data.firm_notes,
        status=REFUND_STATUSES[outcome.status],
        gateway=gateway.name,
        processor_reference=outcome.reference,
    )
    session.add(refund)
    _report(session, artifact, refund, pay_base_url)
    return Refunded(refund, artifact)


def list_refunds(session: Session, partner_id: uuid.UUID, payment_id: str) -> list[Refund]:
    """A payment's refunds, oldest first (the order they were made in, which is the
    order they took their shares of it)."""
    payment = _partners_payment(session, partner_id, payment_id)
    return list(
        session.scalars(
            select(Refund)
            .where(Refund.payment_id == payment.id)
            .order_by(Refund.created_at, Refund.id)
        )
    )


# --- outcomes that arrive later ---------------------------------------------------------


def _locked_refund(session: Session, refund_id: uuid.UUID) -> tuple[Refund, Artifact]:
    """The refund and its artifact, both locked (the artifact first, as every path
    locks them)."""
    refund = session.get_one(Refund, refund_id)
    artifact = artifacts.locked(session, kind_of(refund.artifact_type), refund.artifact_id)
    session.refresh(refund, with_for_update=True)
    return refund, artifact


def _apply_outcome(
    session: Session, artifact: Artifact, refund: Refund, outcome: RefundOutcome, pay_base_url: str
) -> bool:
    """Bring a refund still under way up to date with what the gateway says came of it;
    ``False`` if that changes nothing (its outcome is known already, or still to come).
    Reconciliation and the processor's notifications both come here, with the artifact
    and the refund locked, so an outcome is applied once."""
    status = REFUND_STATUSES[outcome.status]
    if refund.status not in UNSETTLED_REFUND_STATUSES or status == refund.status:
        return False
    refund.status = status
    refund.processor_reference = outcome.reference or refund.processor_reference
    refund.updated_at = utcnow()
    _report(session, artifact, refund, pay_base_url)
    return True


def unsettled_refund_ids(session: Session, gateway_name: str) -> list[uuid.UUID]:
    """This gateway's refunds whose outcome is still to come."""
    return unsettled_ids(session, Refund, UNSETTLED_REFUND_STATUSES, gateway_name)


def reconcile_refund(
    session: Session, refund_id: uuid.UUID, gateway: PaymentGateway, pay_base_url: str
) -> bool:
    """Ask the gateway what came of a refund still under way, and apply it; ``True`` if
    that changed the refund."""
    refund, artifact = _locked_refund(session, refund_id)
    if refund.status not in UNSETTLED_REFUND_STATUSES or refund.processor_reference is None:
        return False
    payment = session.get_one(Payment, refund.payment_id)
    try:
        outcome = gateway.refund_outcome(refund.processor_reference, payment.processor_account)
    except GatewayUnavailableError as error:
        raise gateway_unavailable(IDEMPOTENCY_HEADER) from error
    return _apply_outcome(session, artifact, refund, outcome, pay_base_url)


def apply_refund_event(
    session: Session, gateway: PaymentGateway, event: ProcessorEvent, pay_base_url: str
) -> bool:
    """Apply the processor's notification about a refund (already verified, and recorded
    as handled by its id); one about a refund we do not know is left alone."""
    if event.refund_outcome is None:
        return False
    refund_id = id_of_event(session, Refund, gateway, event, "partnerpay_refund_id")
    if refund_id is None:
        return False
    refund, artifact = _locked_refund(session, refund_id)
    return _apply_outcome(session, artifact, refund, event.refund_outcome, pay_base_url)
