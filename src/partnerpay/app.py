"""The FastAPI application: routers, error handlers and the database's lifetime."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from partnerpay.background import job_runner
from partnerpay.config import Settings, get_settings
from partnerpay.db import Database
from partnerpay.dependencies import SessionDep, UnitOfWorkRoute, database_of
from partnerpay.events.routes import events_router
from partnerpay.events.service import count_backlog
from partnerpay.firms.accounts_routes import router as bank_accounts_router
from partnerpay.firms.routes import router as firms_router
from partnerpay.invoices.routes import payments_router
from partnerpay.invoices.routes import router as invoices_router
from partnerpay.limits import BodySizeLimit, RateLimit
from partnerpay.observability import RequestObserver, WebhookBacklog, metrics_exposition
from partnerpay.partners.routes import router as partners_router
from partnerpay.partners.service import GrantCache
from partnerpay.payments.gateways import gateway_for
from partnerpay.payments.routes import (
    PaymentAttemptLimits,
    pay_router,
    processor_router,
    refunds_router,
)
from partnerpay.payouts.routes import router as payouts_router
from partnerpay.paypage.routes import STATIC_DIR
from partnerpay.paypage.routes import router as paypage_router
from partnerpay.problems import PROBLEM_CONTENT_TYPE, install_problem_handlers, problem_responses
from partnerpay.processes import freeze_startup_objects
from partnerpay.transactions.routes import router as transactions_router
from partnerpay.transactions.routes import v4_router as transactions_v4_router
from partnerpay.webhooks.routes import webhooks_router
from partnerpay.wire import ModelResponse, WireModel

PARTNER_API_PREFIX = "/api/v3/partner"
PARTNER_API_V4_PREFIX = "/api/v4/partner"

DESCRIPTION = """
The Partner API lets a practice-management system raise invoices for the firms it serves
and follow them to payment.

**Authentication.** Every `/api/v3/partner/...` call carries two headers:
`X-CHANNEL-PARTNER-ID` (the partner's uuid) and `X-API-KEY`.

**Errors** are `application/problem+json` documents:
`{"type", "title", "status", "detail",
"error_context": {"code", "fields": [{"field", "message"}]}}`;
`type` is a stable machine code (`validation_error`, `firm_not_active`, ...).
"""


class Health(WireModel):
    status: str


def _partner_api() -> APIRouter:
    router = APIRouter(
        prefix=PARTNER_API_PREFIX,
        responses=problem_responses(401, 429),
    )
    router.include_router(invoices_router)
    router.include_router(firms_router)
    router.include_router(bank_accounts_router)
    router.include_router(payments_router)
    router.include_router(refunds_router)
    router.include_router(webhooks_router)
    router.include_router(events_router)
    router.include_router(partners_router)
    router.include_router(transactions_router)
    router.include_router(payouts_router)
    return router


def _partner_api_v4() -> APIRouter:
    """The routes FeeWise has moved to its v4 API."""
    router = APIRouter(prefix=PARTNER_API_V4_PREFIX, responses=problem_responses(401, 429))
    router.include_router(transactions_v4_router)
    return router


def _operations_api() -> APIRouter:
    router = APIRouter(tags=["Operations"], route_class=UnitOfWorkRoute)

    @router.get("/healthz", summary="Liveness and database check", response_model=Health)
    def healthz(session: SessionDep) -> ModelResponse:
        session.execute(text("SELECT 1"))
        return ModelResponse(Health(status="ok"))

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def metrics(request: Request) -> Response:
        database = database_of(request)

        def backlog() -> tuple[int, int]:
            with database.session(read_only=True) as session:
                return count_backlog(session)

        body, content_type = metrics_exposition(WebhookBacklog(backlog))
        return Response(body, media_type=content_type)

    return router


def _describe_errors_as_sent(app: FastAPI) -> None:
    """Make ``/openapi.json`` say what the API does: both credential headers are needed
    together (FastAPI lists each as an alternative), and bad input is a 400 problem, not
    FastAPI's 422."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for operation in (op for path in schema["paths"].values() for op in path.values()):
            if len(operation.get("security", [])) > 1:
                operation["security"] = [
                    {
                        name: scopes
                        for each in operation["security"]
                        for name, scopes in each.items()
                    }
                ]
            if operation.get("responses", {}).pop("422", None) is not None:
                operation["responses"].setdefault(
                    "400",
                    {
                        "description": "Bad request",
                        "content": {
                            PROBLEM_CONTENT_TYPE: {
                                "schema": {"$ref": "#/components/schemas/Problem"}
                            }
                        },
                    },
                )
        for unused in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(unused, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.require_startable()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        database = Database(settings.database_url, settings.db_pool_size)
        app.state.database = database
        dispatcher = job_runner(database, settings) if settings.run_dispatcher else None
        if dispatcher:
            dispatcher.start()
        freeze_startup_objects()
        try:
            yield
        finally:
            if dispatcher:
                await run_in_threadpool(dispatcher.stop)
            await run_in_threadpool(database.dispose)

    app = FastAPI(
        title="partnerpay Partner API",
        version="3.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=JSONResponse,
    )
    app.state.settings = settings
    app.state.gateway = gateway_for(settings)
    app.state.payment_attempt_limits = PaymentAttemptLimits(settings)
    app.state.grant_cache = GrantCache(settings.auth_cache_seconds)
    app.state.partner_rate_limit = RateLimit(settings.rate_limit)
    app.state.auth_failure_limit = RateLimit(settings.auth_failure_rate_limit)
    install_problem_handlers(app)
    app.include_router(_partner_api())
    app.include_router(_partner_api_v4())
    app.include_router(pay_router)
    app.include_router(processor_router)
    app.include_router(paypage_router)
    app.include_router(_operations_api())
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestObserver)
    _describe_errors_as_sent(app)
    return app
