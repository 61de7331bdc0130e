"""Authentication of partner requests: ``X-CHANNEL-PARTNER-ID`` and ``X-API-KEY``.

Credentials verified a moment ago are answered from a small in-process cache (see
``GrantCache``), so that an authenticated request usually costs no query and no trip to
a worker thread before its endpoint runs.
"""

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from partnerpay.db import Database
from partnerpay.dependencies import DatabaseDep
from partnerpay.partners.service import (
    AuthenticatedPartner,
    Credentials,
    Grant,
    GrantCache,
    authenticate,
)
from partnerpay.problems import ProblemError

partner_id_header = APIKeyHeader(
    name="X-CHANNEL-PARTNER-ID",
    scheme_name="ChannelPartnerId",
    description="The channel partner's id (a uuid).",
    auto_error=False,
)
api_key_header = APIKeyHeader(
    name="X-API-KEY",
    scheme_name="ApiKey",
    description="One of the channel partner's API keys.",
    auto_error=False,
)

UNAUTHORIZED = (
    "The X-CHANNEL-PARTNER-ID and X-API-KEY headers do not name a partner and one of "
    "its current API keys."
)


def grant_cache(request: Request) -> GrantCache:
    cache: GrantCache = request.app.state.grant_cache
    return cache


def _verify(database: Database, credentials: Credentials) -> Grant | None:
    with database.session(read_only=True) as session:
        return authenticate(session, credentials)


async def current_partner(
    request: Request,
    database: DatabaseDep,
    partner_id: Annotated[str | None, Security(partner_id_header)],
    api_key: Annotated[str | None, Security(api_key_header)],
) -> AuthenticatedPartner:
    credentials = Credentials.parse(partner_id, api_key)
    if credentials is None:
        raise ProblemError(401, "unauthorized", UNAUTHORIZED)
    cache = grant_cache(request)
    partner = cache.lookup(credentials)
    if partner is not None:
        return partner
    grant = await run_in_threadpool(_verify, database, credentials)
    if grant is None:
        raise ProblemError(401, "unauthorized", UNAUTHORIZED)
    cache.remember(credentials, grant)
    return grant.partner


PartnerDep = Annotated[AuthenticatedPartner, Depends(current_partner)]
