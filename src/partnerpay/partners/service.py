"""Channel partners and their API keys.

Keys are 256-bit random secrets; only their SHA-256 digest is stored (a fast hash is
enough for a secret of that entropy) and digests are compared in constant time.
"""

import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from partnerpay.db import utcnow
from partnerpay.partners.models import ApiKey, Partner
from partnerpay.wire import parse_uuid

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
    session.flush()
    return IssuedKey(partner=partner, api_key=issued)


def _active_key_filter(now: datetime) -> ColumnElement[bool]:
    return or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now)


@dataclass(frozen=True)
class AuthenticatedPartner:
    """The partner a request was authenticated as."""

    id: uuid.UUID


@dataclass(frozen=True)
class Credentials:
    """A request's partner id and the digest of its API key (the key itself is not kept)."""

    partner_id: uuid.UUID
    key_digest: str

    @classmethod
    def parse(cls, partner_id: str | None, api_key: str | None) -> "Credentials | None":
        """``None`` when either header is missing or the id is not a uuid."""
        if not partner_id or not api_key:
            return None
        try:
            parsed_id = parse_uuid(partner_id)
        except ValueError:
            return None
        return cls(parsed_id, hash_api_key(api_key))


@dataclass(frozen=True)
class Grant:
    """Credentials found valid: whose they are and until when the key works."""

    partner: AuthenticatedPartner
    key_expires_at: datetime | None


def authenticate(session: Session, credentials: Credentials) -> Grant | None:
    """What these credentials grant, or ``None`` (one query: a key row exists only for an
    existing partner)."""
    keys = session.execute(
        select(ApiKey.key_hash, ApiKey.expires_at).where(
            ApiKey.partner_id == credentials.partner_id, _active_key_filter(utcnow())
        )
    ).all()
    # Compare against every key (no early exit) so timing says nothing about which matched.
    grant = None
    for key_hash, expires_at in keys:
        if hmac.compare_digest(key_hash, credentials.key_digest):
            grant = Grant(AuthenticatedPartner(credentials.partner_id), expires_at)
    return grant


class GrantCache:
    """Credentials verified in the last ``ttl_s`` seconds, so that most requests are
    authenticated without a query.

    An entry never outlives its key's ``expires_at``. A key rotation forgets its
    partner's entries in the process that handled it; other processes notice a key
    stopped by rotation within ``ttl_s``. Failed attempts are never remembered.
    """

    def __init__(
        self, ttl_s: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[Credentials, tuple[float, Grant]] = {}

    def lookup(self, credentials: Credentials) -> AuthenticatedPartner | None:
        entry = self._entries.get(credentials)
        if entry is None:
            return None
        fresh_until, grant = entry
        expired = grant.key_expires_at is not None and grant.key_expires_at <= utcnow()
        if self.clock() >= fresh_until or expired:
            self._entries.pop(credentials, None)
            return None
        return grant.partner

    def remember(self, credentials: Credentials, grant: Grant) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[credentials] = (self.clock() + self.ttl_s, grant)

    def forget_partner(self, partner_id: uuid.UUID) -> None:
        for credentials in list(self._entries):  # a copy: the event loop may be adding
            if credentials.partner_id == partner_id:
                self._entries.pop(credentials, None)


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
    session.flush()
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
    session.flush()
