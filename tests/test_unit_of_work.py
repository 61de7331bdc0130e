"""A request is one unit of work: the request's session is committed once, after the
endpoint returns and before the response is sent, and rolled back on any exception (a 4xx
problem included, and a commit that fails, which is answered as an error, never a 200)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import event
from sqlalchemy.orm import Session
from starlette.types import Message, Receive, Scope, Send

from partnerpay.app import create_app
from partnerpay.config import Settings
from partnerpay.db import Database
from partnerpay.dependencies import SessionDep, UnitOfWorkRoute
from partnerpay.partners.models import Partner
from partnerpay.problems import ProblemError, install_problem_handlers
from partnerpay.wire import ModelResponse, WireModel


class Written(WireModel):
    id: str


def _app(database: Database, order: list[str]) -> FastAPI:
    router = APIRouter(route_class=UnitOfWorkRoute)

    @router.post("/partners/{name}", response_model=Written)
    def write(session: SessionDep, name: str) -> ModelResponse:
        partner = Partner(id=uuid.uuid4(), name=name)
        session.add(partner)
        session.flush()
        if name.startswith("refused"):
            raise ProblemError(409, "refused", "Written, then refused.")
        order.append("endpoint returned")
        return ModelResponse(Written(id=str(partner.id)))

    app = FastAPI()
    app.state.database = database
    install_problem_handlers(app)
    app.include_router(router)
    return app


def _recording_sends(app: FastAPI, order: list[str]) -> Any:
    async def recorded(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_and_record(message: Message) -> None:
            if message["type"] == "http.response.start":
                order.append("response started")
            await send(message)

        await app(scope, receive, send_and_record)

    return recorded


@pytest.fixture
def order() -> Iterator[list[str]]:
    order: list[str] = []

    def committed(_session: Session) -> None:
        order.append("committed")

    event.listen(Session, "after_commit", committed)
    yield order
    event.remove(Session, "after_commit", committed)


def _post(app: Any, path: str) -> httpx.Response:
    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(path)

    # In a thread of its own: another test's event loop may still run in this one (the
    # payment page's browser tests leave Playwright's).
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, post()).result()


def _stored(database: Database, name: str) -> bool:
    with database.session(read_only=True) as session:
        return session.query(Partner).filter_by(name=name).count() == 1


def test_a_write_is_committed_once_before_its_response_is_sent(
    database: Database, order: list[str]
) -> None:
    name = f"committed {uuid.uuid4().hex[:8]}"
    response = _post(_recording_sends(_app(database, order), order), f"/partners/{name}")
    assert response.status_code == 200
    assert order == ["endpoint returned", "committed", "response started"]
    assert _stored(database, name)


def test_a_problem_raised_after_a_write_leaves_nothing_written(
    database: Database, order: list[str]
) -> None:
    name = f"refused {uuid.uuid4().hex[:8]}"
    response = _post(_app(database, order), f"/partners/{name}")
    assert response.status_code == 409
    assert order == []
    assert not _stored(database, name)


def test_a_commit_that_fails_is_an_error_response_and_leaves_nothing_written(
    database: Database, order: list[str]
) -> None:
    name = f"unlucky {uuid.uuid4().hex[:8]}"

    def fail(_session: Session) -> None:
        raise RuntimeError("the commit failed")

    event.listen(Session, "before_commit", fail)
    try:
        response = _post(_app(database, order), f"/partners/{name}")
    finally:
        event.remove(Session, "before_commit", fail)
    assert response.status_code == 500
    assert response.json()["type"] == "internal_error"
    assert "committed" not in order
    assert not _stored(database, name)


def test_every_route_is_a_unit_of_work() -> None:
    """A router without ``route_class=UnitOfWorkRoute`` would never commit its writes."""
    app = create_app(Settings())
    routes = [context.original_route for context in iter_route_contexts(app.routes)]
    api_routes = [route for route in routes if isinstance(route, APIRoute)]
    assert len(api_routes) > 20
    assert [route.name for route in api_routes if not isinstance(route, UnitOfWorkRoute)] == []
    writes = [route for route in api_routes if route.methods - {"GET", "HEAD", "OPTIONS"}]
    assert len(writes) > 10
    assert [route.name for route in writes if not route.endpoint.in_unit_of_work] == []
