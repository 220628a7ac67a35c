"""The error envelope, the domain exception hierarchy, and the one place that turns errors into HTTP.

Handlers and services raise `ApiError` subclasses and never build error responses themselves, so
every non-2xx answer has the same shape and clients can branch on `error`.

    ApiError
     ├── BadRequestError          400 invalid_json
     ├── UnauthorizedError        401 unauthorized
     ├── ForbiddenError           403 forbidden (and domain 403s such as target_not_allowed)
     ├── NotFoundError            404 not_found
     ├── UnsupportedMediaTypeError 415 unsupported_media_type
     ├── ConflictError            409 conflict (and domain 409s)
     ├── RequestValidationError   422 validation_error (+ invalid_fields)
     ├── UnprocessableError       422 with a domain code (engine_mismatch, ...)
     └── UpstreamError            502/504 upstream_* (a scraped server failed)
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from performance_agent.clock import utc_now
from performance_agent.observability import request_id_of

if TYPE_CHECKING:
    from collections.abc import Mapping

    from litestar.types import ExceptionHandlersMap

__all__ = (
    "ERROR_CODE_BY_STATUS",
    "ApiError",
    "BadRequestError",
    "ConflictError",
    "ErrorDetail",
    "ErrorEnvelope",
    "ForbiddenError",
    "NotFoundError",
    "RequestValidationError",
    "UnauthorizedError",
    "UnprocessableError",
    "UnsupportedMediaTypeError",
    "UpstreamError",
    "envelope_of",
    "exception_handlers",
)

logger = logging.getLogger("performance_agent.errors")

ERROR_CODE_BY_STATUS: dict[int, str] = {
    400: "invalid_json",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_server_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "upstream_timeout",
}

_DEFAULT_MESSAGE_BY_STATUS: dict[int, str] = {
    404: "No resource at this path.",
    405: "This method is not allowed on this path.",
    413: "The request body is larger than the configured limit.",
    429: "Too many requests; slow down and retry after the time in Retry-After.",
}


class ErrorDetail(msgspec.Struct, kw_only=True):
    """One problem with one field; `field` is a dotted path such as `body.slo.ttft_p99_s` or `query.limit`."""

    field: str | None
    message: str
    type: str


class ErrorEnvelope(msgspec.Struct, kw_only=True):
    """Body of every non-2xx response except the health reports (which keep their own report shape)."""

    error: str
    message: str
    details: list[ErrorDetail] = msgspec.field(default_factory=list)
    timestamp: datetime
    path: str
    request_id: str
    context: dict[str, Any] = msgspec.field(default_factory=dict)
    invalid_fields: list[str] | msgspec.UnsetType = msgspec.UNSET


class ApiError(Exception):
    """Base of every error the API answers on purpose."""

    status_code = 500
    error = "internal_server_error"

    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        details: list[ErrorDetail] | None = None,
        context: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if error is not None:
            self.error = error
        if status_code is not None:
            self.status_code = status_code
        self.details = details or []
        self.context = dict(context or {})
        self.headers = dict(headers or {})


class BadRequestError(ApiError):
    status_code = 400
    error = "invalid_json"


class UnauthorizedError(ApiError):
    status_code = 401
    error = "unauthorized"


class ForbiddenError(ApiError):
    status_code = 403
    error = "forbidden"


class NotFoundError(ApiError):
    status_code = 404
    error = "not_found"


class ConflictError(ApiError):
    status_code = 409
    error = "conflict"


class UnprocessableError(ApiError):
    status_code = 422
    error = "validation_error"


class UnsupportedMediaTypeError(ApiError):
    status_code = 415
    error = "unsupported_media_type"


class RequestValidationError(ApiError):
    status_code = 422
    error = "validation_error"

    def __init__(self, message: str, details: list[ErrorDetail]) -> None:
        super().__init__(message, details=details)


class UpstreamError(ApiError):
    status_code = 502
    error = "upstream_error"


def _envelope(
    request: Request[Any, Any, Any], status: int, body: ErrorEnvelope, headers: Mapping[str, str]
) -> Response[ErrorEnvelope]:
    return Response(body, status_code=status, headers=dict(headers), media_type="application/json")


def _base(request: Request[Any, Any, Any], error: str, message: str) -> ErrorEnvelope:
    return ErrorEnvelope(
        error=error,
        message=message,
        timestamp=utc_now(),
        path=request.url.path,
        request_id=request_id_of(request.scope),
    )


def envelope_of(exc: ApiError, path: str, request_id: str) -> ErrorEnvelope:
    """The envelope for `exc`; also used by the edge middleware, which answers outside Litestar."""
    body = ErrorEnvelope(
        error=exc.error,
        message=exc.message,
        details=exc.details,
        timestamp=utc_now(),
        path=path,
        request_id=request_id,
        context=exc.context,
    )
    if isinstance(exc, RequestValidationError):
        body.invalid_fields = [d.field for d in exc.details if d.field is not None]
    return body


def _handle_api_error(request: Request[Any, Any, Any], exc: ApiError) -> Response[ErrorEnvelope]:
    body = envelope_of(exc, request.url.path, request_id_of(request.scope))
    return _envelope(request, exc.status_code, body, exc.headers)


def _litestar_validation_details(exc: ValidationException) -> list[ErrorDetail]:
    """Litestar reports parameter problems as `{key, message, source}`; we report dotted field paths."""
    details: list[ErrorDetail] = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if not isinstance(item, dict):
            continue
        raw_source = item.get("source") or "body"
        source = str(getattr(raw_source, "value", raw_source))
        key = item.get("key")
        field = "body" if source == "body" and key in (None, "data") else f"{source}.{key}" if key else source
        message = str(item.get("message") or exc.detail)
        if field == "body" and "required" in message.lower():
            message = "a JSON request body is required"
        details.append(
            ErrorDetail(field=field, message=message, type="missing" if "required" in message else "invalid")
        )
    return details


def _handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorEnvelope]:
    status = exc.status_code
    headers = dict(exc.headers or {})
    if isinstance(exc, ValidationException) or status == 400:
        details = _litestar_validation_details(exc) if isinstance(exc, ValidationException) else []
        if details:
            invalid = RequestValidationError(
                "The request is not valid: " + "; ".join(f"{d.field}: {d.message}" for d in details), details
            )
            return _handle_api_error(request, invalid)
        body = _base(request, "invalid_json", f"The request body is not valid JSON: {exc.detail}")
        return _envelope(request, 400, body, headers)
    error = ERROR_CODE_BY_STATUS.get(status, "http_error")
    message = _DEFAULT_MESSAGE_BY_STATUS.get(status) or exc.detail
    body = _base(request, error, message)
    if status == 405 and "allow" in {k.lower() for k in headers}:
        allow = next(v for k, v in headers.items() if k.lower() == "allow")
        body.context = {"allowed_methods": [m.strip() for m in allow.split(",") if m.strip()]}
    return _envelope(request, status, body, headers)


def _handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorEnvelope]:
    request_id = request_id_of(request.scope)
    logger.error(
        "unhandled exception",
        exc_info=exc,
        extra={"request_id": request_id, "path": request.url.path, "method": request.method},
    )
    body = _base(request, "internal_server_error", f"An unexpected error occurred; quote request id {request_id}.")
    return _envelope(request, HTTP_500_INTERNAL_SERVER_ERROR, body, {})


def exception_handlers() -> ExceptionHandlersMap:
    return {
        ApiError: _handle_api_error,
        HTTPException: _handle_http_exception,
        Exception: _handle_unexpected,
    }


_RESPONSE_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed JSON (`invalid_json`).",
    401: "Missing or wrong API key (`unauthorized`).",
    403: "The API key's role is too low, or the target is refused (`forbidden`, domain codes).",
    404: "Unknown resource (`not_found`).",
    409: "Conflict with the resource's current state (`conflict` or a domain code).",
    413: "Request body larger than PERF_AGENT_MAX_BODY_BYTES (`payload_too_large`).",
    415: "A body sent without `Content-Type: application/json` (`unsupported_media_type`).",
    422: "Schema, type or range violation (`validation_error`, with `invalid_fields`) or a domain code.",
    429: "Rate limited (`rate_limited`); see Retry-After and RateLimit-* headers.",
    500: "Unexpected error (`internal_server_error`); nothing internal is leaked.",
    502: "The scraped server failed (`upstream_unreachable`, `upstream_error`, `upstream_invalid_metrics`).",
    503: "Not ready or unhealthy.",
    504: "The scraped server did not answer in time (`upstream_timeout`).",
}


def error_responses(*statuses: int) -> dict[int, Any]:
    """OpenAPI entries documenting our envelope (Litestar would document its own default shape)."""
    from litestar.openapi import ResponseSpec
    from litestar.openapi.spec import Example

    common = (400, 401, 403, 415, 429, 500)
    documented: dict[int, Any] = {}
    for status in sorted({*statuses, *common}):
        error = ERROR_CODE_BY_STATUS.get(status, "error")
        example = {
            "error": error,
            "message": _RESPONSE_DESCRIPTIONS[status],
            "details": [],
            "timestamp": "2026-01-01T00:00:00Z",
            "path": "/api/v1/...",
            "request_id": "0b9f6c1e2d3a4b5c",
            "context": {},
        }
        documented[status] = ResponseSpec(
            data_container=ErrorEnvelope,
            description=_RESPONSE_DESCRIPTIONS[status],
            generate_examples=False,
            examples=[Example(summary=error, value=example)],
        )
    return documented
