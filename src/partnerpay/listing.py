"""FeeWise's list query: a date range, numbered pages, a sort field and order, and
filters by status and by account, as its transactions and payouts lists take them
(``?from=&to=&page=&page_size=&sort_by=&order=&status_filter=Paid,Failed&account_id_filter=``),
and the ``pagination_metadata`` its answers carry."""

import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Query

from partnerpay.db import utcnow
from partnerpay.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, NumberedPage, SortOrder
from partnerpay.problems import invalid_field
from partnerpay.wire import InputTimestamp, Timestamp, WireModel, parse_uuid

DEFAULT_RANGE = timedelta(days=7)


@dataclass(frozen=True)
class ListQuery:
    """A FeeWise list request, checked: ``from_`` defaults to seven days before ``to``,
    which defaults to now."""

    from_: datetime
    to: datetime
    page: int
    page_size: int
    sort_by: str
    order: SortOrder
    status_filter: list[str]
    account_id_filter: list[uuid.UUID]


def _csv(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _statuses(text: str | None, statuses: type[StrEnum]) -> list[str]:
    values = _csv(text)
    allowed = [status.value for status in statuses]
    unknown = [value for value in values if value not in allowed]
    if unknown:
        raise invalid_field("status_filter", f"'{unknown[0]}' is not one of {', '.join(allowed)}")
    return values


def _account_ids(text: str | None) -> list[uuid.UUID]:
    try:
        return [parse_uuid(value) for value in _csv(text)]
    except ValueError:
        raise invalid_field("account_id_filter", "must be account ids, comma separated") from None


def list_query(
    sort_fields: Sequence[str], default_sort: str, statuses: type[StrEnum]
) -> Callable[..., Coroutine[Any, Any, ListQuery]]:
    """The dependency that reads a list's query, for a list sortable by ``sort_fields``
    whose items have ``statuses``. Async: it does no I/O, so it costs no thread hop."""

    async def read(
        from_: Annotated[
            InputTimestamp | None,
            Query(alias="from", description="Default: seven days before `to`"),
        ] = None,
        to: Annotated[InputTimestamp | None, Query(description="Default: now")] = None,
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
        sort_by: Annotated[str, Query(description=", ".join(sort_fields))] = default_sort,
        order: SortOrder = SortOrder.DESC,
        status_filter: Annotated[
            str | None, Query(description=f"Comma separated: {', '.join(statuses)}")
        ] = None,
        account_id_filter: Annotated[
            str | None, Query(description="Comma separated account ids")
        ] = None,
    ) -> ListQuery:
        if sort_by not in sort_fields:
            raise invalid_field("sort_by", f"must be one of {', '.join(sort_fields)}")
        end = to or utcnow()
        start = from_ or end - DEFAULT_RANGE
        if start > end:
            raise invalid_field("from", "must not be after `to`")
        return ListQuery(
            start,
            end,
            page,
            page_size,
            sort_by,
            order,
            _statuses(status_filter, statuses),
            _account_ids(account_id_filter),
        )

    return read


class PaginationMetadata(WireModel):
    """FeeWise's PaginationMetadata: what was asked for, and where this page lies."""

    requested_page: int
    requested_page_size: int
    requested_from_date: Timestamp
    requested_to_date: Timestamp
    requested_sort_by: str
    requested_status_filter: list[str]
    requested_account_id_filter: list[uuid.UUID]
    requested_sort_order: SortOrder
    current_page_start_index: int
    current_page_end_index: int
    total_records: int
    total_pages: int
    first_page: int
    last_page: int

    @classmethod
    def of(cls, query: ListQuery, page: NumberedPage[Any]) -> "PaginationMetadata":
        start = (page.page - 1) * page.page_size
        return cls(
            requested_page=query.page,
            requested_page_size=query.page_size,
            requested_from_date=query.from_,
            requested_to_date=query.to,
            requested_sort_by=query.sort_by,
            requested_status_filter=query.status_filter,
            requested_account_id_filter=query.account_id_filter,
            requested_sort_order=query.order,
            current_page_start_index=start + 1 if page.items else 0,
            current_page_end_index=start + len(page.items),
            total_records=page.total,
            total_pages=page.total_pages,
            first_page=1,
            last_page=page.total_pages,
        )
