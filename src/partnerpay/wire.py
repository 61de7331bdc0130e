"""Wire types shared by every domain: timestamps and list cursors."""

import base64
import binascii
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    PlainSerializer,
)
from pydantic_core import PydanticCustomError
from starlette.responses import Response

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


RFC3339_START = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ]")


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
    """A response object. On the wire, fields with no value are left out."""

    def wire(self) -> dict[str, Any]:
        """The JSON-ready form, as responses and webhook events carry it."""
        return self.model_dump(mode="json", exclude_none=True)


class ModelResponse(Response):
    """A JSON response serialised straight from its model (fields with no value left
    out). Routes return it and declare the model as ``response_model`` for the OpenAPI
    document, so FastAPI does not validate what the model already guarantees."""

    media_type = "application/json"

    def __init__(
        self, model: WireModel, status_code: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(model.model_dump_json(exclude_none=True), status_code, headers)


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([format_timestamp(created_at), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor from :func:`encode_cursor` names; 400 if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, row_id = json.loads(raw)
        return datetime.fromisoformat(created_at), parse_uuid(row_id)
    except (binascii.Error, ValueError, TypeError, AttributeError) as error:
        raise invalid_field("cursor", "is not a cursor this API returned") from error


def parse_uuid(text: str) -> uuid.UUID:
    """A uuid in any spelling :class:`uuid.UUID` reads, but of ASCII only: it would take
    other scripts' digits (fullwidth, Arabic-Indic, ...) for hex digits."""
    if not text.isascii():
        raise ValueError(f"not a uuid: {text!r}")
    return uuid.UUID(text)


def parse_id(value: str | uuid.UUID, what: str) -> uuid.UUID:
    """An id from a path; one that is not a uuid names nothing, so it is a 404."""
    try:
        return value if isinstance(value, uuid.UUID) else parse_uuid(value)
    except ValueError:
        raise not_found(what, value) from None
