"""What the API handlers share: who the caller is, the body, and the error shape -- with the one mapping of a
refusal's kind (shared/errors.py) to its HTTP status."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from shared.domain import TransientError
from shared.errors import DomainError, ErrorKind, Forbidden, Malformed, TooLarge, Unauthorized
from shared.observability import logger

MAX_SUBJECT_CHARS = 255
# What a client is told to wait before retrying a request refused for want of a database connection.
RETRY_AFTER_BUSY_S = 1

# The one place a refusal becomes an HTTP status.
HTTP_STATUS: dict[ErrorKind, int] = {
    ErrorKind.MALFORMED: 400,
    ErrorKind.UNAUTHORIZED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.INVALID: 422,
    ErrorKind.GATEWAY_FAILED: 502,
    ErrorKind.UNAVAILABLE: 503,
}


def http_status(error: DomainError) -> int:
    return HTTP_STATUS[error.kind]


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """{"error": {"code", "message"[, "details"]}}: every refusal's body."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"error": error}


def caller(event: APIGatewayProxyEventV2) -> str:
    """The authenticated user: the JWT subject the authorizer verified, never the request body."""
    sub = event.request_context.authorizer.jwt_claim.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("unauthorized", "a valid bearer token is required")
    # Signed, but not a subject a user id can be: PostgreSQL text cannot hold NUL, and no identity
    # provider issues control characters or subjects of this length.
    if len(sub) > MAX_SUBJECT_CHARS or not sub.isprintable():
        raise Unauthorized("invalid_subject", "the token's subject cannot identify a user")
    return sub


def scopes(event: APIGatewayProxyEventV2) -> set[str]:
    authorizer = event.request_context.authorizer
    found = set(authorizer.jwt_scopes or [])
    claims = authorizer.jwt_claim
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.strip("[]").replace(",", " ").split())
        elif isinstance(value, list):
            found.update(str(v) for v in value)
    return found


def require_scope(event: APIGatewayProxyEventV2, scope: str) -> None:
    caller(event)
    if scope not in scopes(event):
        raise Forbidden("forbidden", f"this route needs the {scope!r} scope")


def read_body(event: APIGatewayProxyEventV2, max_bytes: int) -> str | None:
    body = event.body
    if body is None:
        return None
    if len(body) > max_bytes * 4 // 3 + 4:
        raise TooLarge("payload_too_large", f"request body exceeds {max_bytes} bytes")
    raw: bytes
    if event.is_base64_encoded:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise Malformed("invalid_body", "body is not valid base64") from None
    else:
        raw = body.encode("utf-8", errors="surrogatepass")
    if len(raw) > max_bytes:
        raise TooLarge("payload_too_large", f"request body exceeds {max_bytes} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("invalid_body", "body is not UTF-8") from None


def read_raw_body(event: APIGatewayProxyEventV2, max_bytes: int) -> bytes:
    """The request body's bytes exactly as sent (base64 decoded when API Gateway encoded it): what a
    gateway signed."""
    body = event.body or ""
    if len(body) > max_bytes * 4 // 3 + 4:
        raise TooLarge("payload_too_large", f"request body exceeds {max_bytes} bytes")
    if event.is_base64_encoded:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise Malformed("invalid_body", "body is not valid base64") from None
    else:
        raw = body.encode("utf-8", errors="surrogatepass")
    if len(raw) > max_bytes:
        raise TooLarge("payload_too_large", f"request body exceeds {max_bytes} bytes")
    return raw


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers)


def install_error_handlers(app: APIGatewayHttpResolver) -> None:
    """Every error leaves as {"error": {"code", "message"}} with the right status."""

    @app.exception_handler(DomainError)  # type: ignore[untyped-decorator]
    def _refused(exc: DomainError) -> Response[Any]:
        status = http_status(exc)
        if status >= 500 and exc.retry_after_s is None:
            logger.error("request failed", code=exc.code)
        headers = None if exc.retry_after_s is None else {"Retry-After": str(exc.retry_after_s)}
        return json_response(status, error_body(exc.code, exc.message, exc.details), headers)

    @app.exception_handler(TransientError)  # type: ignore[untyped-decorator]
    def _busy(exc: TransientError) -> Response[Any]:
        # No database connection to be had (RDS Proxy's borrow timed out, the database restarting):
        # nothing was recorded, so the client retries with the same Idempotency-Key and gets the same job.
        logger.warning("request refused: database unavailable", error=type(exc.__cause__ or exc).__name__)
        body = error_body("service_busy", "the service is busy; retry shortly with the same request")
        return json_response(503, body, {"Retry-After": str(RETRY_AFTER_BUSY_S)})

    @app.exception_handler(Exception)  # type: ignore[untyped-decorator]
    def _unexpected(exc: Exception) -> Response[Any]:
        # Logged with its traceback; the client learns nothing about the internals.
        logger.exception("unhandled error", error=type(exc).__name__)
        return json_response(500, error_body("internal_error", "internal error"))

    @app.not_found
    def _not_found(_: Exception) -> Response[Any]:
        return json_response(404, error_body("route_not_found", "no such route"))
