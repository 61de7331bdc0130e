"""Newest-first keyset pagination over ``(created_at, id)``, shared by every list route."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from partnerpay.wire import decode_cursor, encode_cursor

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class Listable(Protocol):
    id: Any
    created_at: Any


T = TypeVar("T", bound=Listable)
Item = TypeVar("Item")


@dataclass(frozen=True)
class Page(Generic[Item]):
    items: list[Item]
    has_more: bool
    next_cursor: str | None


def newest_first_page(
    session: Session,
    statement: Select[T],
    created_at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[uuid.UUID],
    *,
    limit: int,
    cursor: str | None,
) -> Page[T]:
    if cursor:
        after_created_at, after_id = decode_cursor(cursor)
        statement = statement.where(tuple_(created_at, row_id) < tuple_(after_created_at, after_id))
    ordered = statement.order_by(created_at.desc(), row_id.desc()).limit(limit + 1)
    rows = list(session.scalars(ordered).unique())
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if has_more else None
    return Page(items=rows, has_more=has_more, next_cursor=next_cursor)
