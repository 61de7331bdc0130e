"""List pagination: newest-first keyset pages over ``(created_at, id)`` for partnerpay's
own lists, and FeeWise's numbered pages (``page``, ``page_size``, a sort field and order)
for the FeeWise lists of transactions and payouts."""

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import ColumnElement, Select, func, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from partnerpay.wire import decode_cursor, encode_cursor

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class Listable(Protocol):
    id: Any
    created_at: Any


T = TypeVar("T", bound=Listable)
Item = TypeVar("Item")
Mapped = TypeVar("Mapped")


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


# --- FeeWise's numbered pages -----------------------------------------------------------

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


class SortOrder(StrEnum):
    ASC = "asc"
    DESC = "desc"


@dataclass(frozen=True)
class NumberedPage(Generic[Item]):
    """One page of a sorted list, numbered from 1, and how many there are in all."""

    items: list[Item]
    page: int
    page_size: int
    total: int

    @property
    def total_pages(self) -> int:
        return max(math.ceil(self.total / self.page_size), 1)

    def map(self, function: Callable[[Item], Mapped]) -> "NumberedPage[Mapped]":
        """The same page of what ``function`` makes of each item."""
        return NumberedPage(
            [function(i) for i in self.items], self.page, self.page_size, self.total
        )


def numbered_page(
    session: Session,
    statement: Select[*tuple[Any, ...]],
    sort_key: ColumnElement[Any] | InstrumentedAttribute[Any],
    row_id: InstrumentedAttribute[uuid.UUID],
    *,
    order: SortOrder,
    page: int,
    page_size: int,
) -> NumberedPage[Any]:
    """Page ``page`` of ``statement``'s rows in ``sort_key``'s order, ties broken by id so
    that every row is on exactly one page however many share a sort value."""
    total = session.scalar(select(func.count()).select_from(statement.order_by(None).subquery()))
    ordering = [sort_key, row_id]
    rows = session.execute(
        statement.order_by(*(c.asc() if order == SortOrder.ASC else c.desc() for c in ordering))
        .limit(page_size)
        .offset((page - 1) * page_size)
    )
    return NumberedPage(list(rows.unique()), page, page_size, int(total or 0))
