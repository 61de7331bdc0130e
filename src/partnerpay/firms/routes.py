from typing import Annotated

from fastapi import APIRouter, Query

from partnerpay.dependencies import SessionDep, UnitOfWorkRoute
from partnerpay.firms import service
from partnerpay.firms.models import FirmStatus
from partnerpay.firms.schemas import FirmCreate, FirmList, FirmOut, FirmResponse
from partnerpay.pagination import DEFAULT_LIMIT, MAX_LIMIT
from partnerpay.partners.dependencies import PartnerDep
from partnerpay.wire import ModelResponse

router = APIRouter(prefix="/firms", tags=["Firms"], route_class=UnitOfWorkRoute)


@router.post("", summary="Onboard a firm", response_model=FirmResponse)
def create_firm(session: SessionDep, partner: PartnerDep, body: FirmCreate) -> ModelResponse:
    """Register a firm for this partner. It starts `Pending`; the operator activates it
    once onboarding is complete (a firm needs an Office account to become `Active`)."""
    firm = service.create_firm(session, partner.id, body)
    return ModelResponse(FirmResponse(firm=FirmOut.of(firm)))


@router.get("", summary="List firms", response_model=FirmList)
def list_firms(
    session: SessionDep,
    partner: PartnerDep,
    external_id: str | None = None,
    status: FirmStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> ModelResponse:
    """This partner's firms, newest first."""
    page = service.list_firms(
        session, partner.id, external_id=external_id, status=status, limit=limit, cursor=cursor
    )
    return ModelResponse(
        FirmList(
            firms=[FirmOut.of(f) for f in page.items],
            has_more=page.has_more,
            next_cursor=page.next_cursor,
        )
    )


@router.get("/{firm_id}", summary="Get a firm", response_model=FirmResponse)
def get_firm(session: SessionDep, partner: PartnerDep, firm_id: str) -> ModelResponse:
    return ModelResponse(
        FirmResponse(firm=FirmOut.of(service.get_firm(session, partner.id, firm_id)))
    )
