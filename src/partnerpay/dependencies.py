"""Request-scoped dependencies shared by every domain's routes, and the request's unit of
work.

A request is one unit of work: services change the request's session and flush; the
request commits once, after its endpoint returns normally and before its response is sent,
and rolls back on any exception (a 4xx ``ProblemError`` included), so nothing is
half-written. The commit runs in the endpoint's own worker-thread call (``UnitOfWorkRoute``
wraps every endpoint), not in the session dependency's exit code: FastAPI 0.163 runs a
``yield`` dependency's exit after the response is sent (``scope="request"``, the default),
or, with ``scope="function"``, before it but on the event loop (an async dependency: the
commit's round trip would block every request) or in another worker thread (a plain one:
two more thread hops per request, and a write slot held while waiting for the thread).

On SQLite a write transaction holds the database's single write slot from its first
statement to its commit. It must never wait for a worker thread while it holds it:
with every worker thread busy waiting for that slot, it would never get one. So the
session's lifetime is managed on the event loop (opening a session does no I/O; closing
one rolls back, at once, whatever a failed request left open), partners are
authenticated with a read-only session of their own, and a request's writes begin and
are committed inside the one worker-thread call that runs the endpoint.

For the same reason every endpoint returns a ``Response`` (``wire.ModelResponse``), never
a model: FastAPI validates a returned model in a second worker-thread call, made while the
request's session still holds its pooled connection. With every thread waiting for a
connection and every connection held by a request waiting for a thread, requests hung
until the pool's timeout (a burst of ``/healthz`` on PostgreSQL did).
"""

import functools
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session

from partnerpay.config import Settings
from partnerpay.db import Database, committed

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
    """This request's session: read-only for a read; a write's is committed once by
    ``UnitOfWorkRoute`` after the endpoint returns, or rolled back if it raises. Closing it
    here rolls back whatever is still open (nothing, unless the endpoint never ran)."""
    session = database_of(request).session(read_only=request.method in READ_METHODS)
    try:
        yield session
    finally:
        session.close()


def _in_unit_of_work(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """``endpoint``, with the request's session (the ``Session`` among its arguments)
    committed once when it returns and rolled back when it raises, in the same
    worker-thread call."""

    @functools.wraps(endpoint)
    def run(**arguments: Any) -> Any:
        session = next((a for a in arguments.values() if isinstance(a, Session)), None)
        if session is None:
            return endpoint(**arguments)
        with committed(session):
            return endpoint(**arguments)

    run.in_unit_of_work = True  # type: ignore[attr-defined]
    return run


class UnitOfWorkRoute(APIRoute):
    """A route whose request is one unit of work (see the module's docstring). Every
    router's ``route_class``; ``tests/test_unit_of_work.py`` holds every route to it."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        # A read's session is read-only, in autocommit mode: it has nothing to commit. A route
        # included in another router comes here again, already wrapped. No async endpoint
        # takes a session (its queries would block the event loop).
        reads_only = set(kwargs.get("methods") or ()) <= READ_METHODS
        wrapped = getattr(endpoint, "in_unit_of_work", False)
        if not (reads_only or wrapped or inspect.iscoroutinefunction(endpoint)):
            endpoint = _in_unit_of_work(endpoint)
        super().__init__(path, endpoint, **kwargs)


DatabaseDep = Annotated[Database, Depends(get_database)]
SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
