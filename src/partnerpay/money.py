"""Amounts and currencies.

Money on the wire is a decimal string; inside, it is :class:`~decimal.Decimal` or an
integer count of the currency's minor unit (cents). Binary floats never carry money.
"""

import re
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

AMOUNT_PATTERN = re.compile(r"^[0-9]{1,10}(\.[0-9]{1,2})?$")
PERCENT_PATTERN = re.compile(r"^[0-9]{1,3}(\.[0-9]{1,4})?$")
# [0-9], not \d: \d is every script's digits (fullwidth, Arabic-Indic, ...), and Decimal()
# reads them all.
MINOR_UNITS_PER_MAJOR = 100
CENT = Decimal("0.01")


class Currency(StrEnum):
    AUD = "AUD"
    CAD = "CAD"
    USD = "USD"
    GBP = "GBP"
    NZD = "NZD"


def _check_amount(text: object) -> str:
    if not isinstance(text, str) or not AMOUNT_PATTERN.fullmatch(text) or Decimal(text) <= 0:
        raise PydanticCustomError(
            "invalid_amount",
            "must be a decimal string (in quotes) greater than zero, with at most 10 digits "
            'before the point and 2 after it, such as "123.45"',
        )
    return text


def _check_percent(text: object) -> str:
    if not isinstance(text, str) or not PERCENT_PATTERN.fullmatch(text) or Decimal(text) > 100:
        raise PydanticCustomError(
            "invalid_percent",
            'must be a percentage string (in quotes) from "0" to "100" with at most 4 '
            "decimal places",
        )
    return text


AmountString = Annotated[
    str,
    BeforeValidator(_check_amount),
    WithJsonSchema({"type": "string", "pattern": AMOUNT_PATTERN.pattern, "examples": ["123.45"]}),
]
"""A positive amount as the client wrote it (``"100"``, ``"123.45"``)."""

PercentString = Annotated[
    str,
    BeforeValidator(_check_percent),
    WithJsonSchema({"type": "string", "pattern": PERCENT_PATTERN.pattern, "examples": ["10"]}),
]
"""A percentage from 0 to 100 as the client wrote it (``"10"``, ``"12.5"``)."""


def to_minor(amount: str | Decimal) -> int:
    """Whole minor units of an amount, rounding half up to the cent."""
    cents = (Decimal(amount) * MINOR_UNITS_PER_MAJOR).quantize(Decimal(1), ROUND_HALF_UP)
    return int(cents)


def percent_of(minor: int, percent: str) -> int:
    """``percent`` % of an amount in minor units, rounded half up to the minor unit."""
    share = Decimal(minor) * Decimal(percent) / 100
    return int(share.quantize(Decimal(1), ROUND_HALF_UP))


def format_minor(minor: int) -> str:
    """The wire form of a platform-computed amount: always two decimals (``"0.00"``)."""
    return str((Decimal(minor) / MINOR_UNITS_PER_MAJOR).quantize(CENT))


def share_of(minor: int, part: int, whole: int) -> int:
    """``minor * part / whole``, rounded half up to the minor unit, in integers (exact at
    any size): the share of an amount that ``part`` of ``whole`` takes."""
    assert whole > 0, "a share is of a whole above zero"
    assert minor >= 0, "a share is of an amount"
    assert part >= 0, "a share is of a part"
    return (2 * minor * part + whole) // (2 * whole)
