"""Authentication of partner requests: ``X-CHANNEL-PARTNER-ID`` and ``X-API-KEY``.

Credentials verified a moment ago are answered from a small in-process cache (see
``GrantCache``), so that an authenticated request usually costs no query and no trip to
a worker thread before its endpoint runs.

Rate limits are counted here, not on the raw headers: an authenticated request counts
against its partner (by the partner's id however the header spelled it), a failed one
against the client's address. Partner ids are not secret, so a stranger sending one with
a wrong key spends only their own address's budget, never the partner's.
"""

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from partnerpay.db import Database
from partnerpay.dependencies import DatabaseDep
from partnerpay.limits import RateLimit, rate_limited
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
TOO_MANY_REQUESTS = "More than {:g} requests per second; retry after a pause."
TOO_MANY_FAILURES = (
    "More than {:g} failed authentications per second from this address; retry after a pause."
)


def grant_cache(request: Request) -> GrantCache:
    cache: GrantCache = request.app.state.grant_cache
    return cache


def _verify(database: Database, credentials: Credentials) -> Grant | None:
    with database.session(read_only=True) as session:
        return authenticate(session, credentials)


async def _verified(
    request: Request, database: Database, credentials: Credentials | None
) -> AuthenticatedPartner:
    """Check credentials not in the cache; 401 if they are wrong, 429 instead once the
    client's address has failed too often (and then without asking the database)."""
    failures: RateLimit = request.app.state.auth_failure_limit
    address = request.client.host if request.client else ""
    wait = failures.wait(address)
    if wait > 0:
        raise rate_limited(wait, TOO_MANY_FAILURES.format(failures.rate))
    grant = await run_in_threadpool(_verify, database, credentials) if credentials else None
    if credentials is None or grant is None:
        wait = failures.take(address)
        if wait > 0:
            raise rate_limited(wait, TOO_MANY_FAILURES.format(failures.rate))
        raise ProblemError(401, "unauthorized", UNAUTHORIZED)
    grant_cache(request).remember(credentials, grant)
    return grant.partner


async def current_partner(
    request: Request,
    database: DatabaseDep,
    partner_id: Annotated[str | None, Security(partner_id_header)],
    api_key: Annotated[str | None, Security(api_key_header)],
) -> AuthenticatedPartner:
    credentials = Credentials.parse(partner_id, api_key)
    partner = None if credentials is None else grant_cache(request).lookup(credentials)
    if partner is None:
        partner = await _verified(request, database, credentials)
    limit: RateLimit = request.app.state.partner_rate_limit
    wait = limit.take(partner.id)
    if wait > 0:
        raise rate_limited(wait, TOO_MANY_REQUESTS.format(limit.rate))
    return partner


PartnerDep = Annotated[AuthenticatedPartner, Depends(current_partner)]
