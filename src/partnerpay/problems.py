"""The error format: ``application/problem+json``, a machine ``type`` and the fields at fault."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"

PLATFORM_SET_FIELDS = frozenset(
    {
        "invoice_id",
        "payment_uri",
        "status",
        "amount_due",
        "payments",
        "created_at",
        "updated_at",
        "account_id",
        "is_default",
        "default_accounts",
    }
)

STATUS_TYPES = {
    400: ("Bad request", "bad_request"),
    401: ("Unauthorized", "unauthorized"),
    404: ("Not found", "not_found"),
    405: ("Method not allowed", "method_not_allowed"),
    408: ("Request timeout", "request_timeout"),
    409: ("Conflict", "conflict"),
    413: ("Payload too large", "payload_too_large"),
    415: ("Unsupported media type", "unsupported_media_type"),
    429: ("Too many requests", "rate_limited"),
    431: ("Request header fields too large", "headers_too_large"),
}


class FieldError(BaseModel):
    field: str
    message: str


class ErrorContext(BaseModel):
    code: str
    fields: list[FieldError] = []
    decline_code: str | None = None


class Problem(BaseModel):
    """An error response (RFC 9457 problem details)."""

    type: str
    title: str
    status: int
    detail: str
    error_context: ErrorContext


class ProblemError(Exception):
    """Raised by services and routes; rendered as problem+json by the app."""

    def __init__(
        self,
        status: int,
        type_: str,
        detail: str,
        *,
        title: str | None = None,
        fields: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.problem = Problem(
            type=type_,
            title=title or STATUS_TYPES.get(status, ("Error", ""))[0],
            status=status,
            detail=detail,
            error_context=ErrorContext(code=type_, fields=list(fields)),
        )
        self.headers = headers


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting these error statuses as problem documents."""
    return {
        status: {"model": Problem, "content": {PROBLEM_CONTENT_TYPE: {}}} for status in statuses
    }


def not_found(what: str, identifier: object) -> ProblemError:
    return ProblemError(404, "not_found", f"No {what} with id '{identifier}' was found.")


def conflict(type_: str, detail: str) -> ProblemError:
    return ProblemError(409, type_, detail)


def invalid_field(field: str, message: str, type_: str = "validation_error") -> ProblemError:
    return ProblemError(
        400, type_, f"{field}: {message}", fields=[FieldError(field=field, message=message)]
    )


def problem_response(error: ProblemError) -> JSONResponse:
    return JSONResponse(
        error.problem.model_dump(exclude_none=True),
        status_code=error.problem.status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=error.headers,
    )


def field_path(loc: Sequence[int | str]) -> str:
    """``("body", "line_items", 1, "amount")`` -> ``"line_items[1].amount"``."""
    path = ""
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def _field_message(error: dict[str, Any]) -> str:
    kind = error["type"]
    name = str(error["loc"][-1]) if error["loc"] else ""
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden" and name in PLATFORM_SET_FIELDS:
        return "is set by the platform and must not be sent"
    if kind == "extra_forbidden":
        return "is not a field of this request"
    return str(error["msg"])


def _is_json_content_type(request: Request) -> bool:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return content_type == "application/json" or content_type.endswith("+json")


def _sent_a_body_not_declared_json(request: Request) -> bool:
    """A body sent with another media type, or with none (a client that forgot the
    header): the framework does not parse it as JSON, and "415, send application/json"
    says why, where validating the raw bytes would only say "not an object"."""
    if _is_json_content_type(request):
        return False
    if request.headers.get("content-type"):
        return True
    declared = request.headers.get("content-length", "0")
    return declared not in ("", "0") or "transfer-encoding" in request.headers


def validation_problem(request: Request, errors: Sequence[Any]) -> ProblemError:
    has_body_error = any(e["loc"] and e["loc"][0] == "body" for e in errors)
    if has_body_error and _sent_a_body_not_declared_json(request):
        return ProblemError(
            415, "unsupported_media_type", "The request body must be sent as application/json."
        )
    if any(e["type"] == "json_invalid" for e in errors):
        return ProblemError(400, "malformed_json", "The request body is not valid JSON.")
    fields = [FieldError(field=field_path(e["loc"]), message=_field_message(e)) for e in errors]
    detail = "; ".join(f"{f.field}: {f.message}" for f in fields)
    return ProblemError(400, "validation_error", f"Invalid request: {detail}.", fields=fields)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def on_problem(_request: Request, error: ProblemError) -> JSONResponse:
        return problem_response(error)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, error: RequestValidationError) -> JSONResponse:
        return problem_response(validation_problem(request, error.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        title, type_ = STATUS_TYPES.get(error.status_code, ("Error", "http_error"))
        detail = error.detail if isinstance(error.detail, str) else title
        if error.status_code == 404 and detail == "Not Found":
            detail = "There is no such resource."
        return problem_response(
            ProblemError(
                error.status_code, type_, detail, title=title, headers=dict(error.headers or {})
            )
        )

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
        return problem_response(
            ProblemError(500, "internal_error", "An unexpected error occurred.", title="Error")
        )

    @app.exception_handler(DataError)
    async def on_data_error(request: Request, error: DataError) -> JSONResponse:
        # PostgreSQL refuses NUL characters in text; that is bad input, not a server fault.
        if "NUL" in str(error.orig):
            return problem_response(
                ProblemError(
                    400, "validation_error", "Text must not contain NUL (\\u0000) characters."
                )
            )
        return await on_unexpected(request, error)
