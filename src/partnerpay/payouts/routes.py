from typing import Annotated

from fastapi import APIRouter, Depends, Query

from partnerpay.dependencies import SessionDep, UnitOfWorkRoute
from partnerpay.firms.service import get_firm
from partnerpay.ledger.models import PayoutStatus
from partnerpay.listing import ListQuery, PaginationMetadata, list_query
from partnerpay.partners.dependencies import PartnerDep
from partnerpay.payouts import service
from partnerpay.payouts.schemas import PayoutList, PayoutsResponse
from partnerpay.problems import problem_responses
from partnerpay.wire import InputTimestamp, ModelResponse

router = APIRouter(tags=["Payouts"], route_class=UnitOfWorkRoute)

PROBLEMS = problem_responses(400, 401, 404)
Since = Annotated[InputTimestamp | None, Query(description="Default: 24 hours ago")]
PayoutQuery = Annotated[
    ListQuery, Depends(list_query(list(service.SORT_FIELDS), "date", PayoutStatus))
]


@router.get("/payouts", summary="List payouts", responses=PROBLEMS, response_model=PayoutList)
def list_payouts(session: SessionDep, partner: PartnerDep, since: Since = None) -> ModelResponse:
    """This partner's payouts made since `since`, oldest first, each with the payments it
    paid out."""
    payouts = service.payouts_since(session, partner.id, since, None)
    return ModelResponse(PayoutList(payouts=service.payout_resources(session, payouts)))


@router.get(
    "/payouts/firms/{firm_id}",
    summary="List a firm's payouts",
    responses=PROBLEMS,
    response_model=PayoutList,
)
def list_firm_payouts(
    session: SessionDep, partner: PartnerDep, firm_id: str, since: Since = None
) -> ModelResponse:
    """The firm's payouts made since `since`, oldest first (FeeWise deprecates this for
    `/firms/{firm_id}/payouts`)."""
    firm = get_firm(session, partner.id, firm_id)
    payouts = service.payouts_since(session, partner.id, since, firm.id)
    return ModelResponse(PayoutList(payouts=service.payout_resources(session, payouts)))


@router.get(
    "/firms/{firm_id}/payouts",
    summary="Search a firm's payouts",
    responses=PROBLEMS,
    response_model=PayoutsResponse,
)
def search_firm_payouts(
    session: SessionDep, partner: PartnerDep, firm_id: str, query: PayoutQuery
) -> ModelResponse:
    """The firm's payouts made from `from` (default: seven days before `to`) to `to`
    (default: now), every filter met, a page at a time."""
    firm = get_firm(session, partner.id, firm_id)
    page = service.search_payouts(session, firm.id, query)
    return ModelResponse(
        PayoutsResponse(
            payouts=service.payout_resources(session, page.items),
            pagination_metadata=PaginationMetadata.of(query, page),
        )
    )
