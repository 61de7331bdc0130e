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

import logging
import math
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import Uuid, bindparam, select
from sqlalchemy.orm import Session

from partnerpay.artifacts import service as artifacts
from partnerpay.artifacts.kinds import kind_of
from partnerpay.artifacts.models import Artifact, ArtifactType, PaymentMethod, SurchargeChoice
from partnerpay.config import Settings
from partnerpay.db import Database, utcnow
from partnerpay.events.models import Topic
from partnerpay.events.outbox import emit_event
from partnerpay.firms.models import Firm, SettlementAccount
from partnerpay.ledger import service as ledger
from partnerpay.ledger.pricing import fee_minor
from partnerpay.money import format_minor, percent_of, to_minor
from partnerpay.payments import refunds
from partnerpay.payments.attempts import (
    Attempt,
    gateway_unavailable,
    id_of_event,
    key_reused,
    unsettled_ids,
)
from partnerpay.payments.fingerprints import fingerprint
from partnerpay.payments.gateway import (
    CardToken,
    GatewayUnavailableError,
    InvalidPaymentSourceError,
    Outcome,
    OutcomeStatus,
    PaymentGateway,
    PaymentOrder,
    PaymentSource,
    ProcessorEvent,
    ProcessorEventKind,
)
from partnerpay.payments.models import (
    ACCEPTED_STATUSES,
    UNSETTLED_STATUSES,
    Payment,
    PaymentStatus,
    ProcessorEventRecord,
)
from partnerpay.payments.schemas import ExternalPaymentIn, PaymentIn, PaymentOut
from partnerpay.problems import ProblemError, invalid_field, not_found
from partnerpay.wire import parse_id

logger = logging.getLogger(__name__)

DEFAULT_METHODS = (PaymentMethod.CARD, PaymentMethod.DIRECT_DEBIT)
EXTERNAL_METHOD = "External"
MINIMUM_SURCHARGE_MINOR = 1


def allowed_methods(invoice: Artifact, gateway: PaymentGateway) -> list[PaymentMethod]:
    """The invoice's methods (its override, else the defaults) that the gateway takes."""
    methods = invoice.payment_methods_override or DEFAULT_METHODS
    return [PaymentMethod(m) for m in methods if m in gateway.methods]


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
    """What the payer asked for, checked against the invoice and the gateway."""

    method: PaymentMethod
    amount_minor: int
    surcharge_minor: int
    source: PaymentSource

    @property
    def total_minor(self) -> int:
        return self.amount_minor + self.surcharge_minor


def _card_source(data: PaymentIn, gateway: PaymentGateway) -> PaymentSource:
    """The card as this gateway takes it: typed into our page (the sandbox), or a token of
    the processor's form, whose card number partnerpay never sees."""
    if gateway.card_form is None:
        if data.card is None:
            raise invalid_field("card", "card details are required to pay by Card", "card_required")
        return data.card.to_card()
    if data.card is not None:
        raise invalid_field(
            "card",
            "must not be sent: this page takes cards through the payment processor's form, "
            "and partnerpay never receives card numbers",
            "card_details_not_accepted",
        )
    if data.card_token is None:
        raise invalid_field(
            "card_token", "the card collected by the processor's form is required", "card_required"
        )
    return CardToken(data.card_token)


def _charge(invoice: Artifact, firm: Firm, data: PaymentIn, gateway: PaymentGateway) -> Charge:
    if data.method not in allowed_methods(invoice, gateway):
        raise invalid_field(
            "method", f"{data.method} is not accepted for this invoice", "method_not_allowed"
        )
    amount_minor = to_minor(data.amount) if data.amount else invoice.amount_due_minor
    artifacts.require_within_due(invoice, amount_minor)
    if data.method == PaymentMethod.CARD:
        surcharge = card_surcharge_minor(invoice, firm, amount_minor)
        return Charge(data.method, amount_minor, surcharge, _card_source(data, gateway))
    assert data.direct_debit is not None  # PaymentIn requires the details of its method
    return Charge(data.method, amount_minor, 0, data.direct_debit.to_account())


def processor_account(session: Session, artifact: Artifact, gateway: PaymentGateway) -> str | None:
    """The gateway account the artifact's money is taken into: its settlement account's
    own (docs/payments.md); 409 ``settlement_account_not_connected`` while it has none."""
    if not gateway.uses_processor_accounts:
        return None
    account = session.get_one(SettlementAccount, artifact.settlement_account_id)
    if not account.processor_account:
        raise ProblemError(
            409,
            "settlement_account_not_connected",
            f"The {account.account_type} account this {artifact.artifact_type.lower()} settles "
            f"to has no {gateway.name} account yet, so it cannot take payments; the operator "
            "connects it with `partnerpay admin connect-account`.",
            title="Settlement account not connected",
        )
    return account.processor_account


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
        raise key_reused(attempt)
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


@dataclass(frozen=True)
class Taken:
    """A payment attempt as it now stands, and the secret with which the page completes it
    when it ``RequiresAction`` of the payer."""

    payment: Payment
    client_secret: str | None = None


def payment_id_for(artifact_id: uuid.UUID, idempotency_key: str) -> uuid.UUID:
    """The id of the payment an attempt makes: derived from its key, so that a retry after
    a crash sends the processor the very request it may already have taken."""
    return uuid.uuid5(artifact_id, idempotency_key)


def _start(gateway: PaymentGateway, order: PaymentOrder, source: PaymentSource) -> Outcome:
    try:
        return gateway.start_payment(order, source)
    except GatewayUnavailableError as error:
        raise gateway_unavailable() from error
    except InvalidPaymentSourceError as error:
        raise invalid_field(
            "card_token", "is not a card collected by this page", "invalid_card_token"
        ) from error


def pay_invoice(
    session: Session,
    invoice_id: str,
    data: PaymentIn,
    gateway: PaymentGateway,
    settings: Settings,
) -> Taken:
    """Charge the payer. A declined charge is recorded and reported (a ``Failed`` payment
    and its ``payment.failed`` event) and returned, like a retry of one: the caller answers
    it with :func:`decline_problem`'s 402 after the request commits, so the decline is kept
    although the answer is an error. The invoice stays locked while the gateway is asked,
    so concurrent attempts are taken one at a time."""
    invoice: Artifact = artifacts.locked(session, kind_of(ArtifactType.INVOICE), invoice_id)
    key = data.idempotency_key
    attempt = Attempt(key, "idempotency_key", key, fingerprint(data.canonical()))
    earlier = _earlier_attempt(session, invoice, attempt)
    if earlier is not None:
        return _brought_up_to_date(session, invoice, earlier, gateway, settings.pay_base_url)
    firm = session.get_one(Firm, invoice.firm_id)
    artifacts.require_payable(invoice, firm.status)
    charge = _charge(invoice, firm, data, gateway)
    account = processor_account(session, invoice, gateway)
    if charge.method == PaymentMethod.CARD:
        _require_no_cooling_off(session, invoice, settings)
    payment_id = payment_id_for(invoice.id, key)
    order = PaymentOrder(
        payment_id=payment_id,
        artifact_id=invoice.id,
        artifact_type=invoice.artifact_type,
        amount_minor=charge.total_minor,
        surcharge_minor=charge.surcharge_minor,
        currency=invoice.currency,
        idempotency_key=f"partnerpay-payment-{payment_id}",
        account=account,
    )
    outcome = _start(gateway, order, charge.source)
    payment = Payment(
        id=payment_id,
        artifact_id=invoice.id,
        artifact_type=invoice.artifact_type,
        idempotency_key=key,
        request_fingerprint=attempt.fingerprint,
        method=charge.method,
        payment_type=charge.method,
        method_detail=outcome.method_detail,
        amount_minor=charge.amount_minor,
        surcharge_minor=charge.surcharge_minor,
        fee_minor=fee_minor(session, invoice.firm_id, charge.method, charge.total_minor),
        settlement_account_id=invoice.settlement_account_id,
        currency=invoice.currency,
        status=PAYMENT_STATUSES[outcome.status],
        decline_code=outcome.decline_code,
        gateway=gateway.name,
        processor_reference=outcome.reference,
        processor_account=account,
        settled_at=utcnow() if outcome.status == OutcomeStatus.SUCCEEDED else None,
    )
    session.add(payment)
    session.flush()
    if payment.status == PaymentStatus.FAILED:
        _emit_payment(session, invoice, payment, Topic.PAYMENT_FAILED)
    elif payment.status != PaymentStatus.REQUIRES_ACTION:
        _apply_payment(session, invoice, payment, settings.pay_base_url)
    return Taken(payment, outcome.client_secret)


PAYMENT_STATUSES = {
    OutcomeStatus.SUCCEEDED: PaymentStatus.SUCCESSFUL,
    OutcomeStatus.PROCESSING: PaymentStatus.PROCESSING,
    OutcomeStatus.REQUIRES_ACTION: PaymentStatus.REQUIRES_ACTION,
    OutcomeStatus.DECLINED: PaymentStatus.FAILED,
}


def _emit_payment(session: Session, invoice: Artifact, payment: Payment, topic: Topic) -> None:
    session.flush()
    resource = payment_out(payment).wire()
    emit_event(session, invoice.partner_id, topic, invoice.external_id, resource)


_RECEIVED = select(Payment.amount_minor, Payment.status).where(
    Payment.artifact_id == bindparam("artifact_id", type_=Uuid),
    Payment.status.in_(ACCEPTED_STATUSES),
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
    report both changes; a payment the gateway has taken goes into the ledger."""
    session.flush()
    artifacts.apply_payment(artifact, _received(session, artifact))
    if payment.status == PaymentStatus.SUCCESSFUL:
        if payment.gateway is not None:
            ledger.record_payment(session, artifact, payment)
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
        settlement_account_id=invoice.settlement_account_id,
        status=PaymentStatus.SUCCESSFUL,
        external_id=data.external_id,
        details=data.details,
        settled_at=utcnow(),
    )
    session.add(payment)
    _apply_payment(session, invoice, payment, settings.pay_base_url)
    return payment, invoice


def _apply_outcome(
    session: Session, artifact: Artifact, payment: Payment, outcome: Outcome, pay_base_url: str
) -> bool:
    """Bring a payment the gateway has still to settle up to date with what the gateway
    says came of it, and its artifact with it; ``False`` if that changes nothing (the
    outcome is known already, or is still to come). Every path that learns an outcome (the
    page's return, the processor's notification, reconciliation, the sandbox's settlement)
    comes here, with the artifact and the payment locked, so they converge on one payment.
    """
    status = PAYMENT_STATUSES[outcome.status]
    if payment.status not in UNSETTLED_STATUSES or status == payment.status:
        return False
    was_counted = payment.status in ACCEPTED_STATUSES
    payment.status = status
    payment.processor_reference = outcome.reference or payment.processor_reference
    payment.method_detail = outcome.method_detail or payment.method_detail
    if status == PaymentStatus.FAILED:
        payment.decline_code = outcome.decline_code
        _emit_payment(session, artifact, payment, Topic.PAYMENT_FAILED)
        if was_counted:
            session.flush()
            artifacts.apply_payment(artifact, _received(session, artifact))
            artifacts.report_change(session, artifact, pay_base_url)
        return True
    if status == PaymentStatus.SUCCESSFUL:
        payment.settled_at = utcnow()
    _apply_payment(session, artifact, payment, pay_base_url)
    return True


def _locked_payment(session: Session, payment_id: uuid.UUID) -> tuple[Payment, Artifact]:
    """The payment and its artifact, both locked (the artifact first, as every payment
    path locks them)."""
    payment = session.get_one(Payment, payment_id)
    artifact = artifacts.locked(session, kind_of(payment.artifact_type), payment.artifact_id)
    session.refresh(payment, with_for_update=True)
    return payment, artifact


def _ask_gateway(gateway: PaymentGateway, payment: Payment) -> Outcome:
    assert payment.processor_reference is not None, "only a gateway's payments are asked after"
    try:
        return gateway.payment_outcome(payment.processor_reference, payment.processor_account)
    except GatewayUnavailableError as error:
        raise gateway_unavailable() from error


def _brought_up_to_date(
    session: Session,
    artifact: Artifact,
    payment: Payment,
    gateway: PaymentGateway,
    pay_base_url: str,
) -> Taken:
    """An earlier attempt as it now is: one still waiting for the payer or the processor
    is asked after first."""
    if payment.status not in UNSETTLED_STATUSES or payment.gateway != gateway.name:
        return Taken(payment)
    outcome = _ask_gateway(gateway, payment)
    _apply_outcome(session, artifact, payment, outcome, pay_base_url)
    return Taken(payment, outcome.client_secret)


def confirm_payment(
    session: Session,
    invoice_id: str,
    payment_id: str,
    gateway: PaymentGateway,
    pay_base_url: str,
) -> Taken:
    """The page's return after the payer completed (or abandoned) what the processor asked
    of them: the payment as the processor now says it is, without waiting for its
    notification."""
    found = get_payment(session, invoice_id, payment_id)
    payment, artifact = _locked_payment(session, found.id)
    return _brought_up_to_date(session, artifact, payment, gateway, pay_base_url)


def unsettled_payment_ids(session: Session, gateway_name: str) -> list[uuid.UUID]:
    """This gateway's payments whose outcome is still to come."""
    return unsettled_ids(session, Payment, UNSETTLED_STATUSES, gateway_name)


def reconcile_payment(
    session: Session, payment_id: uuid.UUID, gateway: PaymentGateway, pay_base_url: str
) -> bool:
    """Ask the gateway what came of a payment still unsettled, and apply it; ``True`` if
    that changed the payment."""
    payment, artifact = _locked_payment(session, payment_id)
    if payment.status not in UNSETTLED_STATUSES:
        return False
    return _apply_outcome(session, artifact, payment, _ask_gateway(gateway, payment), pay_base_url)


def settle_payment(session: Session, payment_id: uuid.UUID, pay_base_url: str) -> bool:
    """Settle a sandbox direct debit still clearing (the sandbox's bank says yes to all);
    ``False`` if it is no longer clearing (a concurrent run settled it)."""
    payment, artifact = _locked_payment(session, payment_id)
    return _apply_outcome(
        session, artifact, payment, Outcome(OutcomeStatus.SUCCEEDED), pay_base_url
    )


def _record_processor_event(session: Session, gateway: PaymentGateway, event_id: str) -> bool:
    """Note the notification as handled; ``False`` if it was already (a redelivery)."""
    seen = session.get(ProcessorEventRecord, (gateway.name, event_id))
    if seen is not None:
        return False
    session.add(ProcessorEventRecord(gateway=gateway.name, event_id=event_id))
    session.flush()
    return True


def handle_processor_event(
    session: Session, gateway: PaymentGateway, event: ProcessorEvent, pay_base_url: str
) -> bool:
    """Apply a verified notification from the processor, once per event id; ``True`` if it
    changed a payment or a refund. One about a payment or refund we do not know (another
    deployment's, on a shared account) is noted and left alone."""
    if not _record_processor_event(session, gateway, event.id):
        return False
    if event.kind == ProcessorEventKind.REFUND:
        return refunds.apply_refund_event(session, gateway, event, pay_base_url)
    if event.kind != ProcessorEventKind.PAYMENT or event.payment_outcome is None:
        return False
    payment_id = id_of_event(session, Payment, gateway, event, "partnerpay_payment_id")
    if payment_id is None:
        return False
    payment, artifact = _locked_payment(session, payment_id)
    return _apply_outcome(session, artifact, payment, event.payment_outcome, pay_base_url)


def get_payment(session: Session, invoice_id: str, payment_id: str) -> Payment:
    payment = session.get(Payment, parse_id(payment_id, "payment"))
    if payment is None or str(payment.artifact_id) != str(parse_id(invoice_id, "invoice")):
        raise not_found("payment", payment_id)
    return payment


def prepare_card(session: Session, invoice_id: str, gateway: PaymentGateway) -> str:
    """A client secret for the processor's card form, for an invoice that can be paid now
    (in the processor account its money settles to)."""
    invoice: Artifact = artifacts.found(session, kind_of(ArtifactType.INVOICE), invoice_id)
    artifacts.require_payable(invoice, session.get_one(Firm, invoice.firm_id).status)
    account = processor_account(session, invoice, gateway)
    try:
        return gateway.prepare_card(account)
    except GatewayUnavailableError as error:
        raise gateway_unavailable() from error


def reconcile_all(
    database: Database, gateway: PaymentGateway, settings: Settings
) -> tuple[int, int]:
    """Reconcile every unsettled payment and every refund still under way of this
    gateway, each in a unit of work of its own (its artifact locked for it alone; one the
    processor cannot answer for now is left for the next run): how many changed, of how
    many asked about."""
    with database.session(read_only=True) as session:
        pending = unsettled_payment_ids(session, gateway.name)
        pending_refunds = refunds.unsettled_refund_ids(session, gateway.name)
    reconcilers = [(reconcile_payment, "payment", payment_id) for payment_id in pending] + [
        (refunds.reconcile_refund, "refund", refund_id) for refund_id in pending_refunds
    ]
    changed = 0
    for reconcile, noun, row_id in reconcilers:
        try:
            with database.unit_of_work() as session:
                changed += reconcile(session, row_id, gateway, settings.pay_base_url)
        except ProblemError as unavailable:
            logger.warning("%s %s not reconciled: %s", noun, row_id, unavailable.problem.detail)
    return changed, len(reconcilers)
