from fastapi import APIRouter, Body, Request
from sqlalchemy import event

from partnerpay.dependencies import SessionDep, UnitOfWorkRoute
from partnerpay.partners import service
from partnerpay.partners.dependencies import PartnerDep, grant_cache
from partnerpay.partners.schemas import RotateKeyRequest, RotateKeyResponse
from partnerpay.wire import ModelResponse

router = APIRouter(tags=["Authentication"], route_class=UnitOfWorkRoute)


@router.post("/rotatekey", summary="Issue a new API key", response_model=RotateKeyResponse)
def rotate_key(
    request: Request,
    session: SessionDep,
    partner: PartnerDep,
    body: RotateKeyRequest = Body(default=None),
) -> ModelResponse:
    """Issue a new API key. The keys working now keep working for
    `previous_key_expires_hours` (default 48; 0 stops them at once, or, on a
    deployment of several API processes, within `PARTNERPAY_AUTH_CACHE_SECONDS`)."""
    hours = (body or RotateKeyRequest()).previous_key_expires_hours
    api_key, expires_at = service.rotate_key(session, partner.id, hours)
    cache = grant_cache(request)
    # Once the request commits: a request authenticated in between must not cache the
    # previous keys as they were before the rotation.
    event.listen(session, "after_commit", lambda _: cache.forget_partner(partner.id), once=True)
    return ModelResponse(RotateKeyResponse(api_key=api_key, previous_key_expires_at=expires_at))
