"""Partner authentication (``X-CHANNEL-PARTNER-ID`` + ``X-API-KEY``) and key rotation."""

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from partnerpay.db import Database
from partnerpay.partners.models import ApiKey
from partnerpay.partners.service import AuthenticatedPartner, Credentials, Grant, GrantCache
from tests.support import API, Partner, Server, assert_problem, create_partner, partner_client

PROBE = f"{API}/firms"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _status_with(server: Server, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(f"{server.base_url}{PROBE}", headers=headers, timeout=30)


def _works(server: Server, partner_id: uuid.UUID, api_key: str) -> bool:
    response = _status_with(server, {"X-CHANNEL-PARTNER-ID": str(partner_id), "X-API-KEY": api_key})
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


def _rotate(client: httpx.Client, **kwargs: Any) -> dict[str, Any]:
    """Rotate the key; the answer, with ``hours`` the old key has left by the server's clock."""
    response = client.post(f"{API}/rotatekey", **kwargs)
    assert response.status_code == 200, response.text
    rotated: dict[str, Any] = response.json()
    assert set(rotated) == {"api_key", "previous_key_expires_at"}
    assert TIMESTAMP.fullmatch(rotated["previous_key_expires_at"]), rotated
    sent_at = parsedate_to_datetime(response.headers["date"])
    expires_at = datetime.fromisoformat(rotated["previous_key_expires_at"].replace("Z", "+00:00"))
    return {**rotated, "hours": (expires_at - sent_at) / timedelta(hours=1)}


def test_the_partners_own_headers_authenticate(server: Server, partner: Partner) -> None:
    response = _status_with(server, partner.headers)
    assert response.status_code == 200, response.text
    assert response.json()["firms"] == []


# (X-CHANNEL-PARTNER-ID, X-API-KEY); "own"/"other" stand for the partner's or another's.
BAD_CREDENTIALS = {
    "no headers": (None, None),
    "no partner id": (None, "own"),
    "no api key": ("own", None),
    "empty api key": ("own", ""),
    "wrong api key": ("own", "own, changed"),
    "partner id not a uuid": ("not-a-uuid", "own"),
    "unknown partner id": ("unknown", "own"),
    "key of another partner": ("own", "other"),
    "id of another partner": ("other", "own"),
}


def _bad_headers(
    spec: tuple[str | None, str | None], own: Partner, other: Partner
) -> dict[str, str]:
    partner_id, api_key = spec
    ids = {"own": str(own.id), "other": str(other.id), "unknown": str(uuid.uuid4())}
    keys = {"own": own.api_key, "other": other.api_key, "own, changed": own.api_key + "x"}
    headers = {}
    if partner_id is not None:
        headers["X-CHANNEL-PARTNER-ID"] = ids.get(partner_id, partner_id)
    if api_key is not None:
        headers["X-API-KEY"] = keys.get(api_key, api_key)
    return headers


@pytest.mark.parametrize("spec", BAD_CREDENTIALS.values(), ids=BAD_CREDENTIALS.keys())
@pytest.mark.parametrize("method_and_path", [("GET", "/invoices"), ("POST", "/rotatekey")])
def test_bad_credentials_are_401_problems(
    server: Server,
    database: Database,
    partner: Partner,
    spec: tuple[str | None, str | None],
    method_and_path: tuple[str, str],
) -> None:
    other = create_partner(database)
    method, path = method_and_path
    response = httpx.request(
        method,
        f"{server.base_url}{API}{path}",
        headers=_bad_headers(spec, partner, other),
        timeout=30,
    )
    problem = assert_problem(response, 401, "unauthorized")
    assert partner.api_key not in response.text
    assert problem["error_context"]["fields"] == []
    # Nothing was rotated: the partner's key still works.
    assert _works(server, partner.id, partner.api_key)


def test_rotation_issues_a_new_key_and_keeps_the_old_one_for_48_hours(
    client: httpx.Client, server: Server, partner: Partner
) -> None:
    rotated = _rotate(client, json={"previous_key_expires_hours": 48})
    assert rotated["api_key"] != partner.api_key
    assert rotated["api_key"].startswith("ppk_")
    assert _works(server, partner.id, rotated["api_key"])
    assert _works(server, partner.id, partner.api_key)
    assert 47.9 < rotated["hours"] < 48.1


@pytest.mark.parametrize("body", [{}, {"json": {}}], ids=["no body", "empty object"])
def test_rotation_defaults_to_48_hours(
    client: httpx.Client, server: Server, partner: Partner, body: dict[str, Any]
) -> None:
    rotated = _rotate(client, **body)
    assert rotated["api_key"] != partner.api_key
    assert _works(server, partner.id, rotated["api_key"])
    assert _works(server, partner.id, partner.api_key)
    assert 47.9 < rotated["hours"] < 48.1


def test_rotation_with_zero_hours_stops_the_old_key_at_once(
    client: httpx.Client, server: Server, partner: Partner
) -> None:
    rotated = _rotate(client, json={"previous_key_expires_hours": 0})
    assert -0.1 < rotated["hours"] < 0.1
    assert not _works(server, partner.id, partner.api_key)
    assert_problem(_status_with(server, partner.headers), 401, "unauthorized")
    assert _works(server, partner.id, rotated["api_key"])


def test_the_new_key_can_rotate_again(server: Server, partner: Partner) -> None:
    with partner_client(server, partner) as first:
        second_key = _rotate(first, json={"previous_key_expires_hours": 0})["api_key"]
    with partner_client(server, Partner(id=partner.id, api_key=second_key)) as second:
        third_key = _rotate(second, json={"previous_key_expires_hours": 0})["api_key"]
    assert len({partner.api_key, second_key, third_key}) == 3
    assert not _works(server, partner.id, partner.api_key)
    assert not _works(server, partner.id, second_key)
    assert _works(server, partner.id, third_key)


def test_rotation_leaves_other_partners_alone(
    client: httpx.Client, server: Server, database: Database
) -> None:
    other = create_partner(database)
    _rotate(client, json={"previous_key_expires_hours": 0})
    assert _works(server, other.id, other.api_key)


@pytest.mark.parametrize(
    "hours",
    [-1, "48", 100000, 1.5, None, True],
    ids=["negative", "string", "huge", "float", "null", "bool"],
)
def test_bad_previous_key_expires_hours_is_400(
    client: httpx.Client, server: Server, partner: Partner, hours: object
) -> None:
    response = client.post(f"{API}/rotatekey", json={"previous_key_expires_hours": hours})
    assert_problem(response, 400, "validation_error", "previous_key_expires_hours")
    # The rejected call issued nothing and expired nothing.
    assert _works(server, partner.id, partner.api_key)


def test_unknown_field_in_rotation_is_400(
    client: httpx.Client, partner: Partner, server: Server
) -> None:
    response = client.post(f"{API}/rotatekey", json={"previous_key_expires_hour": 0})
    assert_problem(response, 400, "validation_error", "previous_key_expires_hour")
    assert _works(server, partner.id, partner.api_key)


def _expire_every_key(database: Database, partner_id: uuid.UUID) -> None:
    with database.session() as session:
        session.execute(
            update(ApiKey)
            .where(ApiKey.partner_id == partner_id)
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
        session.commit()


@pytest.fixture
def uncached_server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    env = {"PARTNERPAY_AUTH_CACHE_SECONDS": "0", "PARTNERPAY_RUN_DISPATCHER": "false"}
    with Server.start(database_url, tmp_path / "server.log", env=env) as running:
        yield running


def test_without_the_cache_a_key_expired_in_the_database_stops_at_once(
    uncached_server: Server, database: Database
) -> None:
    partner = create_partner(database)
    assert _works(uncached_server, partner.id, partner.api_key)
    _expire_every_key(database, partner.id)
    assert not _works(uncached_server, partner.id, partner.api_key)


# --- the cache of verified credentials ---------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _credentials(api_key: str = "ppk_key", partner_id: str | None = None) -> Credentials:
    credentials = Credentials.parse(partner_id or str(uuid.uuid4()), api_key)
    assert credentials is not None
    return credentials


def _grant(partner_id: uuid.UUID, key_expires_at: datetime | None = None) -> Grant:
    return Grant(AuthenticatedPartner(partner_id), key_expires_at)


def test_a_cached_grant_lasts_its_time_to_live() -> None:
    clock = FakeClock()
    cache = GrantCache(ttl_s=5, clock=clock)
    credentials = _credentials()
    assert cache.lookup(credentials) is None
    cache.remember(credentials, _grant(credentials.partner_id))
    clock.now += 4.9
    assert cache.lookup(credentials) == AuthenticatedPartner(credentials.partner_id)
    clock.now += 0.1
    assert cache.lookup(credentials) is None


def test_a_cached_grant_ends_when_its_key_expires() -> None:
    cache = GrantCache(ttl_s=60, clock=FakeClock())
    credentials = _credentials()
    expired = datetime.now(UTC) - timedelta(seconds=1)
    cache.remember(credentials, _grant(credentials.partner_id, key_expires_at=expired))
    assert cache.lookup(credentials) is None


def test_the_cache_tells_keys_and_partners_apart_and_forgets_a_partner() -> None:
    cache = GrantCache(ttl_s=60, clock=FakeClock())
    partner_id, other_id = str(uuid.uuid4()), str(uuid.uuid4())
    first, second = _credentials("ppk_a", partner_id), _credentials("ppk_b", partner_id)
    other = _credentials("ppk_a", other_id)
    cache.remember(first, _grant(first.partner_id))
    cache.remember(other, _grant(other.partner_id))
    assert cache.lookup(second) is None
    cache.forget_partner(first.partner_id)
    assert cache.lookup(first) is None
    assert cache.lookup(other) == AuthenticatedPartner(other.partner_id)


def test_the_cache_is_bounded_and_can_be_off() -> None:
    bounded = GrantCache(ttl_s=60, max_entries=3, clock=FakeClock())
    for n in range(10):
        credentials = _credentials(f"ppk_{n}")
        bounded.remember(credentials, _grant(credentials.partner_id))
        assert len(bounded._entries) <= 3
    off = GrantCache(ttl_s=0, clock=FakeClock())
    credentials = _credentials()
    off.remember(credentials, _grant(credentials.partner_id))
    assert off.lookup(credentials) is None
