"""What every request that moves money shares, payments and refunds alike: how it names its
attempt (a key, and the fingerprint of the request sent with it), the 409 for a key sent
again with another request, the 503 for a processor whose answer is not known, and
which of our records a processor's notification, or a reconciliation, is about.

Kept apart from :mod:`partnerpay.payments.service` so that
:mod:`partnerpay.payments.refunds`, which that module calls, can use them too.
"""

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from partnerpay.payments.gateway import PaymentGateway, ProcessorEvent
from partnerpay.payments.models import Payment, Refund
from partnerpay.problems import FieldError, ProblemError


@dataclass(frozen=True)
class Attempt:
    """How a request names its attempt: the key stored with what it made, the field (or
    header) and value the caller sent it as, and the request's fingerprint
    (:mod:`partnerpay.payments.fingerprints`). ``scope`` is what the key is unique on and
    ``makes`` what a new request makes, for the words of :func:`key_reused`."""

    key: str
    field: str
    sent: str
    fingerprint: str
    scope: str = "invoice"
    makes: str = "payment"


def key_reused(attempt: Attempt) -> ProblemError:
    """409 ``idempotency_key_reused``: the key made something for another request."""
    message = (
        f"'{attempt.sent}' was already used for a different request on this {attempt.scope}; "
        f"a retry must repeat that request, and a new {attempt.makes} needs a new "
        f"{attempt.field}"
    )
    return ProblemError(
        409,
        "idempotency_key_reused",
        f"{attempt.field}: {message}.",
        title="Idempotency key reused",
        fields=[FieldError(field=attempt.field, message=message)],
    )


def gateway_unavailable(key_field: str = "idempotency_key") -> ProblemError:
    """503 ``gateway_unavailable``: the processor did not answer, so what came of the
    request is not known; the same request with the same key may be retried, and the
    processor recognises it by the key."""
    return ProblemError(
        503,
        "gateway_unavailable",
        "The payment processor could not be reached, so the outcome of this attempt is not "
        f"known; retry the same request (with the same {key_field}) in a moment.",
        title="Payment processor unavailable",
        headers={"Retry-After": "5"},
    )


def id_of_event(
    session: Session,
    model: type[Payment] | type[Refund],
    gateway: PaymentGateway,
    event: ProcessorEvent,
    metadata_key: str,
) -> uuid.UUID | None:
    """The payment (or refund) a processor's notification is about: found by the
    processor's id of it, or by our id in its metadata; ``None`` if we have no such."""
    found = session.scalars(
        select(model.id).where(
            model.gateway == gateway.name, model.processor_reference == event.reference
        )
    ).first()
    if found is not None:
        return found
    named = event.metadata.get(metadata_key)
    try:
        return uuid.UUID(named) if named and session.get(model, uuid.UUID(named)) else None
    except ValueError:
        return None


def unsettled_ids(
    session: Session,
    model: type[Payment] | type[Refund],
    statuses: frozenset[str],
    gateway_name: str,
) -> list[uuid.UUID]:
    """This gateway's payments (or refunds) in one of ``statuses``, whose outcome the
    processor has still to give."""
    return list(
        session.scalars(
            select(model.id).where(
                model.gateway == gateway_name,
                model.status.in_(statuses),
                model.processor_reference.is_not(None),
            )
        )
    )
