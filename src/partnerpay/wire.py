"""Wire types shared by every domain: timestamps and list cursors."""

import base64
import binascii
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from pydantic_core import PydanticCustomError

from partnerpay.db import truncate_to_millis
from partnerpay.problems import invalid_field, not_found


def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and ``Z``: ``1953-07-23T13:56:24.084Z``."""
    value = value.astimezone(UTC)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond // 1000:03d}Z"
    )


Timestamp = Annotated[datetime, PlainSerializer(format_timestamp, return_type=str)]
"""A datetime as responses show it."""


def _to_utc_millis(value: datetime) -> datetime:
    try:
        return truncate_to_millis(value.astimezone(UTC))
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise PydanticCustomError(
            "datetime_out_of_range", "is out of the range of dates in UTC"
        ) from None


RFC3339_START = re.compile(r"^\d{4}-\d\d-\d\d[Tt ]")


def _require_rfc3339_text(value: object) -> object:
    """Refuse what pydantic would read as a Unix timestamp (``0``, ``"1700000000"``)."""
    if isinstance(value, datetime) or (isinstance(value, str) and RFC3339_START.match(value)):
        return value
    raise PydanticCustomError(
        "datetime_format",
        'must be an RFC 3339 date-time with an offset, such as "1953-07-23T13:56:24.084Z"',
    )


InputTimestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_require_rfc3339_text),
    AfterValidator(_to_utc_millis),
    PlainSerializer(format_timestamp, return_type=str),
]
"""A datetime a client sends: RFC 3339 with an offset; kept to the millisecond."""


class WireModel(BaseModel):
    """A response object: fields with no value are left out of the JSON."""

    # No return annotation on purpose: with one, pydantic would publish that annotation
    # as the response schema instead of the model's fields.
    @model_serializer(mode="wrap")
    def _omit_empty_fields(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        return {key: value for key, value in handler(self).items() if value is not None}


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([format_timestamp(created_at), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor from :func:`encode_cursor` names; 400 if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, row_id = json.loads(raw)
        return datetime.fromisoformat(created_at), uuid.UUID(row_id)
    except (binascii.Error, ValueError, TypeError) as error:
        raise invalid_field("cursor", "is not a cursor this API returned") from error


def parse_id(value: str | uuid.UUID, what: str) -> uuid.UUID:
    """An id from a path; one that is not a uuid names nothing, so it is a 404."""
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(value)
    except ValueError:
        raise not_found(what, value) from None
