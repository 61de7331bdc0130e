"""Request-scoped dependencies shared by every domain's routes.

On SQLite a write transaction holds the database's single write slot from its first
statement to its commit. It must never wait for a worker thread while it holds it:
with every worker thread busy waiting for that slot, it would never get one. So the
session's lifetime is managed on the event loop (opening a session does no I/O; closing
one rolls back, at once, whatever a failed request left open), partners are
authenticated with a read-only session of their own, and a request's writes begin and
are committed by its service inside the one worker-thread call that runs the endpoint.

For the same reason every endpoint returns a ``Response`` (``wire.ModelResponse``), never
a model: FastAPI validates a returned model in a second worker-thread call, made while the
request's session still holds its pooled connection. With every thread waiting for a
connection and every connection held by a request waiting for a thread, requests hung
until the pool's timeout (a burst of ``/healthz`` on PostgreSQL did).
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from partnerpay.config import Settings
from partnerpay.db import Database

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def database_of(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def get_database(request: Request) -> Database:
    return database_of(request)


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session for this request; writes are committed by the service that makes them."""
    session = database_of(request).session(read_only=request.method in READ_METHODS)
    try:
        yield session
    finally:
        session.close()


DatabaseDep = Annotated[Database, Depends(get_database)]
SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
