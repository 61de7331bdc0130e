"""Channel partners and their API keys.

Keys are 256-bit random secrets; only their SHA-256 digest is stored (a fast hash is
enough for a secret of that entropy) and digests are compared in constant time.
"""

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from partnerpay.db import utcnow
from partnerpay.partners.models import ApiKey, Partner

API_KEY_PREFIX = "ppk_"


@dataclass(frozen=True)
class IssuedKey:
    partner: Partner
    api_key: str


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def generate_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def _add_key(session: Session, partner_id: uuid.UUID, api_key: str) -> None:
    session.add(ApiKey(partner_id=partner_id, key_hash=hash_api_key(api_key)))


def create_partner(
    session: Session, name: str, *, partner_id: uuid.UUID | None = None, api_key: str | None = None
) -> IssuedKey:
    partner = Partner(id=partner_id or uuid.uuid4(), name=name)
    session.add(partner)
    session.flush()
    issued = api_key or generate_api_key()
    _add_key(session, partner.id, issued)
    session.commit()
    return IssuedKey(partner=partner, api_key=issued)


def _active_key_filter(now: datetime) -> ColumnElement[bool]:
    return or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now)


@dataclass(frozen=True)
class AuthenticatedPartner:
    """The partner a request was authenticated as."""

    id: uuid.UUID


def authenticate(
    session: Session, partner_id: str | None, api_key: str | None
) -> AuthenticatedPartner | None:
    """The partner these credentials belong to, or ``None`` (one query: a key row exists
    only for an existing partner)."""
    if not partner_id or not api_key:
        return None
    try:
        parsed_id = uuid.UUID(partner_id)
    except ValueError:
        return None
    presented = hash_api_key(api_key)
    key_hashes = session.scalars(
        select(ApiKey.key_hash).where(ApiKey.partner_id == parsed_id, _active_key_filter(utcnow()))
    ).all()
    # Compare against every key (no early exit) so timing says nothing about which matched.
    matched = False
    for key_hash in key_hashes:
        matched |= hmac.compare_digest(key_hash, presented)
    return AuthenticatedPartner(parsed_id) if matched else None


def rotate_key(
    session: Session, partner_id: uuid.UUID, previous_key_expires_hours: int
) -> tuple[str, datetime]:
    """Issue a new key; every key working now keeps working for the given number of hours."""
    now = utcnow()
    previous_expires_at = now + timedelta(hours=previous_key_expires_hours)
    session.execute(
        update(ApiKey)
        .where(
            ApiKey.partner_id == partner_id,
            or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > previous_expires_at),
        )
        .values(expires_at=previous_expires_at)
    )
    api_key = generate_api_key()
    _add_key(session, partner_id, api_key)
    session.commit()
    return api_key, previous_expires_at


def ensure_partner_key(session: Session, partner_id: uuid.UUID, name: str, api_key: str) -> None:
    """Make sure this partner exists and this key works for it (the demo's fixed credentials)."""
    if session.get(Partner, partner_id) is None:
        create_partner(session, name, partner_id=partner_id, api_key=api_key)
        return
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_api_key(api_key)))
    if key is None:
        _add_key(session, partner_id, api_key)
    elif key.expires_at is not None:
        key.expires_at = None
    session.commit()
