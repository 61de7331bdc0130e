"""Partner authentication (``X-CHANNEL-PARTNER-ID`` + ``X-API-KEY``) and key rotation."""

import re
import uuid
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from partnerpay.db import Database
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
