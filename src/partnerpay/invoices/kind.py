"""Invoices as a kind of artifact, registered on import of :mod:`partnerpay.invoices`:
what payments need to reach an invoice without importing this package."""

from typing import Any

from sqlalchemy.orm import Session

from partnerpay.artifacts.kinds import ArtifactKind, register
from partnerpay.artifacts.models import ArtifactType
from partnerpay.events.models import Topic
from partnerpay.invoices.models import Invoice
from partnerpay.invoices.schemas import InvoiceOut


def _resource(session: Session, invoice: Invoice, pay_base_url: str) -> dict[str, Any]:
    """The invoice as it now is, its payments read afresh (one was just taken) and its
    refunds read again when next wanted (one may just have been made)."""
    session.refresh(invoice, ["payments"])
    session.expire(invoice, ["refunds", "paid_out_entries"])
    return InvoiceOut.of(invoice, pay_base_url).wire()


INVOICE = ArtifactKind(
    artifact_type=ArtifactType.INVOICE,
    model=Invoice,
    noun="invoice",
    updated_topic=Topic.INVOICE_UPDATED,
    resource=_resource,
)
register(INVOICE)
