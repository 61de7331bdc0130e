"""The artifact's state machine: the one place that sets an artifact's ``status``,
``amount_paid_minor`` and ``refunded_minor``, and the rules for applying a payment, a
refund, an adjustment or a void.

Payments apply a payment (a new one, a settlement) with :func:`apply_payment`, giving what
the artifact's accepted payments now come to, and refunds with :func:`apply_refunds`; each
kind's own service changes an artifact's amount or content through :func:`adjust_amount`
and :func:`revise`, and voids it with :func:`void`. Callers hold the artifact's row lock.
A firm's bank accounts ask which artifacts settle to an account
(:func:`open_artifact_settling_to`) and move them to another
(:func:`move_to_settlement_account`), which locks them itself.
"""

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from partnerpay.artifacts.kinds import ArtifactKind, kind_of
from partnerpay.artifacts.models import (
    FINAL_STATUSES,
    PAYABLE_STATUSES,
    Artifact,
    ArtifactStatus,
    ArtifactType,
)
from partnerpay.db import utcnow
from partnerpay.events.outbox import emit_event
from partnerpay.firms.models import FirmStatus
from partnerpay.money import format_minor, to_minor
from partnerpay.problems import conflict, invalid_field, not_found
from partnerpay.wire import parse_id

_SET_HERE_ONLY = frozenset({"status", "amount_paid_minor", "refunded_minor"})


@dataclass(frozen=True)
class Received:
    """What an artifact's accepted payments come to: their total, and whether any of them
    is still clearing (a direct debit not yet settled)."""

    amount_minor: int
    clearing: bool


def _follow_amounts(artifact: Artifact, *, clearing: bool) -> None:
    """The status transition, made after any change to an artifact's amount or its
    payments, whichever path made it: ``Authorised`` while an accepted payment is still
    clearing, ``Paid`` once nothing is due, else ``Submitted``. A ``Voided`` artifact
    stays voided; ``amount_paid_minor`` must be up to date."""
    if artifact.status == ArtifactStatus.VOIDED:
        return
    if clearing:
        artifact.status = ArtifactStatus.AUTHORISED
    elif artifact.amount_due_minor == 0:
        artifact.status = ArtifactStatus.PAID
    else:
        artifact.status = ArtifactStatus.SUBMITTED


def apply_payment(artifact: Artifact, received: Received) -> None:
    """Bring the artifact up to date with its accepted payments, after one was taken or
    settled."""
    artifact.amount_paid_minor = received.amount_minor
    _follow_amounts(artifact, clearing=received.clearing)
    artifact.updated_at = utcnow()


def apply_refunds(artifact: Artifact, refunded_minor: int) -> bool:
    """Bring the artifact up to date with its refunds: ``refunded_minor`` is what its
    refunds done or under way now come to. ``False`` (and nothing changed) when that is
    what it was.

    A refund gives money back; it does not undo the payment: what was paid, what is due
    and the status stay as they are, so a paid invoice stays ``Paid`` (docs/decisions.md).
    """
    if artifact.refunded_minor == refunded_minor:
        return False
    artifact.refunded_minor = refunded_minor
    artifact.updated_at = utcnow()
    return True


def require_updatable(artifact: Artifact) -> None:
    if artifact.status in FINAL_STATUSES:
        raise conflict(
            f"{artifact.artifact_type.lower()}_not_updatable",
            f"{artifact.artifact_type} '{artifact.id}' is {artifact.status} and can no longer "
            "be changed.",
        )


def _require_amount_covers_payments(artifact: Artifact, amount_minor: int) -> None:
    if amount_minor < artifact.amount_paid_minor:
        raise conflict(
            "amount_below_paid",
            f"{artifact.artifact_type} '{artifact.id}' has payments totalling more than the "
            "new amount.",
        )


def adjust_amount(artifact: Artifact, new_amount: str) -> bool:
    """Change an open artifact's total, never below what has been paid; ``False`` (and
    nothing changed) when it is the amount it has."""
    require_updatable(artifact)
    if artifact.amount == new_amount:
        return False
    amount_minor = to_minor(new_amount)
    _require_amount_covers_payments(artifact, amount_minor)
    artifact.amount, artifact.amount_minor = new_amount, amount_minor
    _follow_amounts(artifact, clearing=artifact.clearing)
    artifact.updated_at = utcnow()
    return True


def revise(artifact: Artifact, columns: dict[str, Any]) -> None:
    """Give an open artifact new content (``amount_minor`` among it, never below what has
    been paid): the columns a partner sets, never its status or what it was paid."""
    assert not _SET_HERE_ONLY & columns.keys(), "status and payments are set by this module"
    _require_amount_covers_payments(artifact, columns["amount_minor"])
    for name, value in columns.items():
        setattr(artifact, name, value)
    _follow_amounts(artifact, clearing=artifact.clearing)
    artifact.updated_at = utcnow()


def void(artifact: Artifact) -> bool:
    """Void an artifact nothing was paid on; ``False`` if it is voided already."""
    if artifact.status == ArtifactStatus.VOIDED:
        return False
    if artifact.status == ArtifactStatus.PAID or artifact.amount_paid_minor > 0:
        raise conflict(
            f"{artifact.artifact_type.lower()}_not_voidable",
            f"{artifact.artifact_type} '{artifact.id}' has payments and cannot be voided.",
        )
    artifact.status = ArtifactStatus.VOIDED
    artifact.updated_at = utcnow()
    return True


def is_payable(artifact: Artifact, firm_status: str) -> bool:
    return (
        artifact.status in PAYABLE_STATUSES
        and artifact.amount_due_minor > 0
        and firm_status == FirmStatus.ACTIVE
    )


def require_payable(artifact: Artifact, firm_status: str) -> None:
    if not is_payable(artifact, firm_status):
        raise conflict(
            f"{artifact.artifact_type.lower()}_not_payable",
            f"{artifact.artifact_type} '{artifact.id}' cannot take payments now.",
        )


def require_within_due(artifact: Artifact, amount_minor: int) -> None:
    due = artifact.amount_due_minor
    if amount_minor > due:
        raise invalid_field("amount", f"is more than the amount due ({format_minor(due)})")


def found(
    session: Session, kind: ArtifactKind, artifact_id: str | uuid.UUID, *, lock: bool = False
) -> Any:
    """The artifact (its row locked for this transaction if ``lock``); 404 if there is
    none."""
    artifact = session.get(kind.model, parse_id(artifact_id, kind.noun), with_for_update=lock)
    if artifact is None:
        raise not_found(kind.noun, artifact_id)
    return artifact


def locked(session: Session, kind: ArtifactKind, artifact_id: str | uuid.UUID) -> Any:
    """The artifact, its row locked for this transaction; 404 if there is none."""
    return found(session, kind, artifact_id, lock=True)


def locked_for_partner(
    session: Session, kind: ArtifactKind, partner_id: uuid.UUID, artifact_id: str | uuid.UUID
) -> Any:
    """One of this partner's artifacts, locked; another partner's is as unknown as a
    missing one."""
    artifact = session.get(kind.model, parse_id(artifact_id, kind.noun), with_for_update=True)
    if artifact is None or artifact.partner_id != partner_id:
        raise not_found(kind.noun, artifact_id)
    return artifact


def report_change(session: Session, artifact: Artifact, pay_base_url: str) -> None:
    """Record the event that reports the artifact as it now is, in the caller's
    transaction (the outbox)."""
    kind = kind_of(artifact.artifact_type)
    session.flush()
    resource = kind.resource(session, artifact, pay_base_url)
    emit_event(session, artifact.partner_id, kind.updated_topic, artifact.external_id, resource)


def open_artifact_settling_to(
    session: Session, firm_id: uuid.UUID, account_id: uuid.UUID
) -> Artifact | None:
    """An artifact of any kind, neither ``Paid`` nor ``Voided``, that settles to this
    account of this firm. Naming the firm limits the search to its artifacts (each kind's
    table has a unique index that leads with ``firm_id``)."""
    for artifact_type in ArtifactType:
        model = kind_of(artifact_type).model
        found: Artifact | None = session.scalars(
            select(model)
            .where(
                model.firm_id == firm_id,
                model.settlement_account_id == account_id,
                model.status.not_in(FINAL_STATUSES),
            )
            .limit(1)
        ).first()
        if found is not None:
            return found
    return None


def move_to_settlement_account(
    session: Session,
    kind: ArtifactKind,
    firm_id: uuid.UUID,
    account_id: uuid.UUID,
    new_account_id: uuid.UUID,
    pay_base_url: str,
) -> int:
    """Settle the firm's artifacts of this kind that settle to ``account_id`` and are
    ``Submitted`` to ``new_account_id`` (an account of the same type) instead, each locked,
    changed and reported (its kind's updated event) in the caller's transaction; how many
    moved.

    ``Authorised`` ones stay: a payment of theirs is still clearing into the account it was
    taken for, and moves once it has cleared (docs/decisions.md). Paid and voided ones
    settle nothing more."""
    model = kind.model
    moving = session.scalars(
        select(model)
        .where(
            model.firm_id == firm_id,
            model.settlement_account_id == account_id,
            model.status == ArtifactStatus.SUBMITTED,
        )
        .order_by(model.created_at, model.id)
        .with_for_update()
    ).all()
    for artifact in moving:
        artifact.settlement_account_id = new_account_id
        artifact.updated_at = utcnow()
        report_change(session, artifact, pay_base_url)
    return len(moving)
