"""The platform's pricing per firm and method, and the fee it prices a payment at."""

import uuid
from decimal import Decimal

from sqlalchemy.orm import Session

from partnerpay.artifacts.models import PaymentMethod
from partnerpay.db import utcnow
from partnerpay.firms.models import Firm
from partnerpay.ledger.models import FirmPricing
from partnerpay.money import PERCENT_PATTERN, percent_of, to_minor
from partnerpay.problems import invalid_field, not_found
from partnerpay.wire import parse_id


def set_firm_pricing(
    session: Session, firm_id: str | uuid.UUID, method: PaymentMethod, percent: str, fixed: str
) -> FirmPricing:
    """The operator prices a method for a firm: ``percent`` of what the client is charged
    plus ``fixed`` (an amount, ``"0.30"``), for payments made from now on."""
    firm = session.get(Firm, parse_id(firm_id, "firm"))
    if firm is None:
        raise not_found("firm", firm_id)
    if not PERCENT_PATTERN.fullmatch(percent) or Decimal(percent) > 100:
        raise invalid_field("percent", 'must be a percentage from "0" to "100", such as "1.75"')
    fixed_minor = _fixed_minor(fixed)
    pricing = session.get(FirmPricing, (firm.id, method))
    if pricing is None:
        pricing = FirmPricing(firm_id=firm.id, method=method)
        session.add(pricing)
    pricing.percent, pricing.fixed_minor, pricing.updated_at = percent, fixed_minor, utcnow()
    session.flush()
    return pricing


def _fixed_minor(fixed: str) -> int:
    try:
        amount = Decimal(fixed)
    except ArithmeticError:
        amount = Decimal(-1)
    if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.01")):
        raise invalid_field("fixed", 'must be an amount of zero or more, such as "0.30"')
    return to_minor(amount)


def fee_minor(session: Session, firm_id: uuid.UUID, method: str, charged_minor: int) -> int:
    """The platform's fee for a payment by ``method`` that charges the client
    ``charged_minor`` (its amount and surcharge): the firm's price for the method, rounded
    half up to the cent; none if the firm has no price for it."""
    pricing = session.get(FirmPricing, (firm_id, method))
    if pricing is None:
        return 0
    return percent_of(charged_minor, pricing.percent) + pricing.fixed_minor
