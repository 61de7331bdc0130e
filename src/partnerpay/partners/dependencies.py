"""Authentication of partner requests: ``X-CHANNEL-PARTNER-ID`` and ``X-API-KEY``."""

from typing import Annotated

from fastapi import Depends, Security
from fastapi.security import APIKeyHeader

from partnerpay.dependencies import DatabaseDep
from partnerpay.partners.service import AuthenticatedPartner, authenticate
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


def current_partner(
    database: DatabaseDep,
    partner_id: Annotated[str | None, Security(partner_id_header)],
    api_key: Annotated[str | None, Security(api_key_header)],
) -> AuthenticatedPartner:
    with database.session(read_only=True) as session:
        partner = authenticate(session, partner_id, api_key)
    if partner is None:
        raise ProblemError(
            401,
            "unauthorized",
            "The X-CHANNEL-PARTNER-ID and X-API-KEY headers do not name a partner and one of "
            "its current API keys.",
        )
    return partner


PartnerDep = Annotated[AuthenticatedPartner, Depends(current_partner)]
