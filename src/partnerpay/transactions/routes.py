from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from partnerpay.artifacts.models import Artifact
from partnerpay.dependencies import SessionDep, UnitOfWorkRoute
from partnerpay.firms.service import get_firm
from partnerpay.listing import ListQuery, PaginationMetadata, list_query
from partnerpay.pagination import NumberedPage
from partnerpay.partners.dependencies import PartnerDep
from partnerpay.partners.service import AuthenticatedPartner
from partnerpay.payments.models import Payment
from partnerpay.problems import problem_responses
from partnerpay.transactions import service
from partnerpay.transactions.schemas import (
    TransactionResponse,
    TransactionsResponse,
    TransactionsResponseV2,
    TransactionStatus,
)
from partnerpay.wire import ModelResponse

router = APIRouter(tags=["Transactions"], route_class=UnitOfWorkRoute)
v4_router = APIRouter(tags=["Transactions"], route_class=UnitOfWorkRoute)

PROBLEMS = problem_responses(400, 401, 404)
TransactionQuery = Annotated[
    ListQuery, Depends(list_query(list(service.SORT_FIELDS), "payment_date", TransactionStatus))
]


def _search(
    session: Session, partner: AuthenticatedPartner, firm_id: str, query: ListQuery
) -> NumberedPage[tuple[Payment, Artifact]]:
    firm = get_firm(session, partner.id, firm_id)
    return service.search_transactions(session, firm.id, query)


@router.get(
    "/firms/{firm_id}/transactions",
    summary="Search a firm's transactions",
    responses=PROBLEMS,
    response_model=TransactionsResponse,
)
def list_transactions(
    session: SessionDep, partner: PartnerDep, firm_id: str, query: TransactionQuery
) -> ModelResponse:
    """The firm's payments made from `from` (default: seven days before `to`) to `to`
    (default: now), every filter met, a page at a time. Prefer the v4 list."""
    page = _search(session, partner, firm_id, query)
    return ModelResponse(
        TransactionsResponse(
            transactions=service.transactions_out(session, page.items),
            pagination_metadata=PaginationMetadata.of(query, page),
        )
    )


@v4_router.get(
    "/firms/{firm_id}/transactions",
    summary="Search a firm's transactions (v4)",
    responses=PROBLEMS,
    response_model=TransactionsResponseV2,
)
def list_transactions_v4(
    session: SessionDep, partner: PartnerDep, firm_id: str, query: TransactionQuery
) -> ModelResponse:
    """As the v3 list, each transaction with its surcharge and whether it can be
    refunded."""
    page = _search(session, partner, firm_id, query)
    return ModelResponse(
        TransactionsResponseV2(
            transactions=service.transactions_v2_out(session, page.items),
            pagination_metadata=PaginationMetadata.of(query, page),
        )
    )


@router.get(
    "/transactions/{transaction_id}",
    summary="Get a transaction",
    responses=PROBLEMS,
    response_model=TransactionResponse,
)
def get_transaction(session: SessionDep, partner: PartnerDep, transaction_id: str) -> ModelResponse:
    """A transaction by its `transaction_id` or its `payment_reference`."""
    payment, artifact = service.get_transaction(session, partner.id, transaction_id)
    (transaction,) = service.transactions_out(session, [(payment, artifact)])
    return ModelResponse(TransactionResponse(transaction=transaction, firm_id=artifact.firm_id))
