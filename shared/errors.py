"""The refusals the services raise: a machine-readable code, a message, details, and a kind -- never an HTTP
status. The one mapping of kind to status is at the edge (shared/http.py), so a service reads the same
whether a Lambda handler, the local API or a test calls it."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class ErrorKind(StrEnum):
    MALFORMED = "malformed"  # the request cannot be read (not JSON, a key header missing)
    UNAUTHORIZED = "unauthorized"  # no caller we can name, or a signature that does not verify
    FORBIDDEN = "forbidden"  # a caller without the right to this
    NOT_FOUND = "not_found"  # nothing of the caller's by that name (someone else's looks the same)
    CONFLICT = "conflict"  # the request is sound, but what it names is not in a state to take it
    TOO_LARGE = "too_large"
    INVALID = "invalid"  # readable, but a value is refused (validation_error, method_not_supported)
    GATEWAY_FAILED = "gateway_failed"  # the payment gateway refused or answered what is not ours
    UNAVAILABLE = "unavailable"  # not now: retry (retry_after_s says when)


class DomainError(Exception):
    """A refusal: code (machine-readable, documented per route), message, details (the body's
    error.details) and, for a refusal that is not for good, retry_after_s."""

    kind: ClassVar[ErrorKind]

    def __init__(self, code: str, message: str, *, retry_after_s: int | None = None, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.retry_after_s = retry_after_s


class Malformed(DomainError):
    kind = ErrorKind.MALFORMED


class Unauthorized(DomainError):
    kind = ErrorKind.UNAUTHORIZED


class Forbidden(DomainError):
    kind = ErrorKind.FORBIDDEN


class NotFound(DomainError):
    kind = ErrorKind.NOT_FOUND


class Conflict(DomainError):
    kind = ErrorKind.CONFLICT


class TooLarge(DomainError):
    kind = ErrorKind.TOO_LARGE


class Invalid(DomainError):
    kind = ErrorKind.INVALID


class GatewayFailed(DomainError):
    kind = ErrorKind.GATEWAY_FAILED


class Unavailable(DomainError):
    kind = ErrorKind.UNAVAILABLE


class NoGatewayToken(Unavailable):
    """The shared limiter has no token of a gateway endpoint soon enough: nothing was sent to the gateway
    (a checkout's create call tells this apart from the gateway's own refusals)."""


# The refusals more than one service makes, written once.


def order_not_found(whose: str = "user") -> NotFound:
    return NotFound("order_not_found", f"no such order for this {whose}")


def order_not_payable(order_status: str) -> Conflict:
    return Conflict("order_not_payable", f"order is {order_status}", order_status=order_status)


def key_reused() -> Conflict:
    return Conflict("idempotency_key_reused", "this Idempotency-Key was used with a different request body")


def payment_in_progress(job_id: str) -> Conflict:
    return Conflict("payment_in_progress", "a payment for this order is already queued", job_id=job_id)


def sold_out(product_ids: list[int]) -> Conflict:
    return Conflict("sold_out", "a product of this order is sold out", product_ids=product_ids)


def job_not_found() -> NotFound:
    return NotFound("job_not_found", "no such payment job")


def method_not_supported(method: object) -> Invalid:
    return Invalid("method_not_supported", f"payment method {method!r} is not enabled", field="method")


def gateway_busy(retry_after_s: int) -> NoGatewayToken:
    return NoGatewayToken(
        "service_busy", "the payment gateway is busy; retry shortly with the same request", retry_after_s=retry_after_s
    )
