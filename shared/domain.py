"""The payment domain: the request, outcomes, reason codes, events and the failures the workers retry (the
API's refusals: shared/errors.py)."""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from shared.errors import Invalid
from shared.gateways import GATEWAY_NAMES, GatewayName, PaymentMethod
from shared.outcomes import GatewayEndOutcome, WalletOutcome

# The largest order id a request may name: the largest integer a JSON number carries exactly in every
# client (2^53 - 1; a double cannot tell 2^63 - 1 from 2^63), well inside PostgreSQL's bigint.
MAX_ORDER_ID = 2**53 - 1


def _whole_number(value: Any) -> Any:
    # JSON Schema's "integer" includes 947.0 (a number with no fractional part), so the API takes it
    # as 947; any other float, a string or a boolean is still refused.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An Idempotency-Key: 1-255 printable ASCII characters, no space at either end (an HTTP header value
# cannot carry one: parsers strip it), so the key the handler sees is the one the client chose.
IDEMPOTENCY_KEY_MAX = 255
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]([ -~]{0,253}[!-~])?$"

# The bounds sit inside the whole-number step: placed after it, pydantic keeps them out of the integer's
# schema, and the OpenAPI document showed its own "gt"/"le" instead of JSON Schema's keywords.
OrderId = Annotated[StrictInt, Field(gt=0, le=MAX_ORDER_ID), BeforeValidator(_whole_number)]
EVENT_SOURCE = "payment-queue"
EVENT_VERSION = "1"
_jitter = random.SystemRandom()


class JobStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED})


class FailureReason(StrEnum):
    """Why a job failed. Business failures: the message is consumed, not retried."""

    INSUFFICIENT_BALANCE = "insufficient_balance"
    CURRENCY_MISMATCH = "currency_mismatch"  # a wallet pays only orders in its own currency
    OUT_OF_STOCK = "out_of_stock"
    # The shopper left the line (DELETE /v1/payments/{job_id}) before a processor took the job.
    CANCELLED = "cancelled"
    # An operator dropped its message from the DLQ (POST /v1/dlq/jobs/{job_id}/drop): it could never succeed.
    DROPPED_BY_OPERATOR = "dropped_by_operator"
    ORDER_NOT_PAYABLE = "order_not_payable"
    INVALID_ORDER = "invalid_order"
    # Gateway payments (Razorpay, Cashfree).
    AMOUNT_MISMATCH = "amount_mismatch"
    GATEWAY_PAYMENT_FAILED = "gateway_payment_failed"
    GATEWAY_PAYMENT_NOT_FOUND = "gateway_payment_not_found"
    GATEWAY_PAYMENT_REFUNDED = "gateway_payment_refunded"
    # The payment is not from the gateway order of the job's checkout (never refunded by us).
    GATEWAY_ORDER_MISMATCH = "gateway_order_mismatch"
    # A job of the old flow (a bare gateway reference, no checkout): refused unpaid, nothing called.
    GATEWAY_PAYMENT_UNBOUND = "gateway_payment_unbound"
    # The checkout's gateway order expired unpaid (a late payment still gets a job of its own).
    GATEWAY_CHECKOUT_EXPIRED = "gateway_checkout_expired"


# The fields of the old flow, which named a gateway payment with nothing binding it to the order.
BARE_REFERENCE_FIELDS = ("cashfree_order_id",)
RAZORPAY_CHECKOUT_FIELDS = ("razorpay_order_id", "razorpay_payment_id", "razorpay_signature")
# What each gateway's checkout hands the page, sent on in POST /v1/payments, its signature last (none: the
# server knows the checkout's payment), and the one of them that names the payment: sent without the
# others, it is the old flow's bare reference.
CHECKOUT_FIELDS: dict[str, tuple[str, ...]] = {"razorpay": RAZORPAY_CHECKOUT_FIELDS}
PAYMENT_REF_FIELDS: dict[str, str] = {"razorpay": "razorpay_payment_id"}


class _Fingerprinted(BaseModel):
    def fingerprint(self) -> str:
        """SHA-256 of the canonical body: equal for equal requests, whatever the key order."""
        canonical = json.dumps(self.model_dump(exclude_none=True), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class PaymentRequest(_Fingerprinted):
    """Body of POST /v1/payments. Strict: a string where a number belongs is refused.

    wallet and cashfree: {"order_id", "method"} (Cashfree: the server knows the order's checkout);
    razorpay: what Razorpay Checkout handed the page, verified before anything is recorded.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    order_id: OrderId
    method: PaymentMethod
    razorpay_order_id: StrictStr | None = Field(default=None, pattern=r"^order_[A-Za-z0-9]{1,40}$")
    razorpay_payment_id: StrictStr | None = Field(default=None, pattern=r"^pay_[A-Za-z0-9]{1,40}$")
    razorpay_signature: StrictStr | None = Field(default=None, min_length=1, max_length=128)

    @model_validator(mode="after")
    def _checkout_fields_per_method(self) -> PaymentRequest:
        for name in RAZORPAY_CHECKOUT_FIELDS:
            given = getattr(self, name) is not None
            if given != (self.method == "razorpay"):
                raise ValueError(f"{name} is {'required' if not given else 'not allowed'} with method {self.method}")
        return self


# A checkout's method that lets the server choose: the first enabled gateway (in the registry's order) that is
# up and has a token (shared/services/checkout.py).
AnyGateway = Literal["auto"]
ANY_GATEWAY: str = get_args(AnyGateway)[0]


def _distinct(methods: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(methods)) != len(methods):
        raise ValueError("must name each gateway once")
    return methods


# The shopper's own order of preference among the gateways.
GatewayPreference = Annotated[
    tuple[GatewayName, ...],
    Field(min_length=1, max_length=len(GATEWAY_NAMES), json_schema_extra={"uniqueItems": True}),
    AfterValidator(_distinct),
]


class CheckoutRequest(BaseModel):
    """Body of POST /v1/checkouts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order_id: OrderId
    method: GatewayName | AnyGateway | GatewayPreference = Field(
        description='a gateway; "auto": the first enabled gateway that is up and not busy; or a list of gateways '
        "in order of preference (the enabled ones are tried in that order)"
    )


def _printable(value: str) -> str:
    if not value.isprintable() or value != value.strip():
        raise ValueError("must be printable characters with no space at either end")
    return value


# A shopper as the identity provider names them: the JWT subject a shopper's own token carries (what
# orders.user_id and users.id hold). The same bounds as a token's subject (shared/http.py caller()).
UserId = Annotated[StrictStr, Field(min_length=1, max_length=255), AfterValidator(_printable)]
# A line of an order as a shop's backend asks for it: the product and how many; the price is the catalogue's.
MAX_ORDER_LINES = 100
MAX_LINE_QUANTITY = 10_000


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    product_id: Annotated[StrictInt, Field(gt=0, le=MAX_ORDER_ID), BeforeValidator(_whole_number)]
    quantity: Annotated[StrictInt, Field(gt=0, le=MAX_LINE_QUANTITY), BeforeValidator(_whole_number)]


class MerchantOrderRequest(_Fingerprinted):
    """Body of POST /v1/merchant/orders: the shopper and what they buy (prices and stock are ours)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: UserId
    items: Annotated[list[OrderLine], Field(min_length=1, max_length=MAX_ORDER_LINES)]

    @model_validator(mode="after")
    def _each_product_once(self) -> MerchantOrderRequest:
        ids = [line.product_id for line in self.items]
        if len(set(ids)) != len(ids):
            raise ValueError("name each product once, with its whole quantity")
        return self


class MerchantPaymentRequest(_Fingerprinted):
    """Body of POST /v1/merchant/payments: a wallet payment started on the named shopper's behalf."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: UserId
    order_id: OrderId
    method: Literal["wallet"]

    def payment(self) -> PaymentRequest:
        """The shopper's own payment request: what their job is keyed and fingerprinted by."""
        return PaymentRequest(order_id=self.order_id, method=self.method)


class WalletAdjustmentRequest(_Fingerprinted):
    """Body of POST /v1/merchant/wallet-adjustments: a credit (> 0) or a debit (< 0) with its reason."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: UserId
    amount_paise: Annotated[StrictInt, Field(ge=-MAX_ORDER_ID, le=MAX_ORDER_ID), BeforeValidator(_whole_number)]
    reason: Annotated[StrictStr, Field(min_length=3, max_length=200), AfterValidator(_printable)]
    currency: Annotated[StrictStr, Field(pattern=r"^[A-Z]{3}$")] | None = None

    @model_validator(mode="after")
    def _not_zero(self) -> WalletAdjustmentRequest:
        if self.amount_paise == 0:
            raise ValueError("amount_paise must not be 0")
        return self


# A field name as an error may repeat it: JSON lets a client choose any key, of any length.
_FIELD_SHOWN_CHARS = 64


def validation_error(exc: ValidationError) -> Invalid:
    """validation_error for the first problem pydantic found, naming its field -- cut short, and never
    the value: an unknown key is the client's own text."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    if not where.isprintable():
        where = where.encode("unicode_escape").decode()
    if len(where) > _FIELD_SHOWN_CHARS:
        where = where[:_FIELD_SHOWN_CHARS] + "…"
    return Invalid("validation_error", f"{where}: {first['msg']}", field=where)


Model = TypeVar("Model", bound=BaseModel)


def validated(model: type[Model], data: Any) -> Model:
    """The data as the model takes it, or validation_error naming the first field refused."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


class TransientError(Exception):
    """A failure worth retrying: the queue redelivers the message later."""


class RetryLater(TransientError):
    """The message was handed back to the queue with a later visibility (gateway backoff).

    Raising it fails the record (and, in a FIFO batch, the rest of its group), so the queue keeps
    it; the visibility already set decides when it comes back.
    """

    def __init__(self, message: str, delay_s: int) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class GatewayRetryable(Exception):
    """A gateway request worth retrying later.

    kind: throttled (429) | unavailable (5xx, refused connection) | unknown_outcome (a write whose
    answer was lost: the next delivery settles it by fetching) | pending (the payment is not final
    yet) | limited (our own limiter has no token soon enough).
    """

    def __init__(self, kind: str, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.retry_after_s = retry_after_s


class GatewayRejected(Exception):
    """A 4xx other than 429: the gateway refuses this request as made (status and the gateway's code)."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"gateway refused the request: HTTP {status} {code}")
        self.status = status
        self.code = code


class PoisonMessageError(Exception):
    """A message that can never succeed (malformed, its job unknown, the wrong path for its job);
    the processor moves it to the DLQ on its first delivery (shared/poison.py)."""


@dataclass(frozen=True)
class PaymentOutcome:
    job_id: str
    outcome: WalletOutcome | GatewayEndOutcome  # never a poison outcome: those raise PoisonMessageError
    reason: str | None = None
    payment_id: int | None = None
    event: dict[str, Any] | None = field(default=None, compare=False)
    # Products with no unit left that this payment took the last of, or failed for: the line of everyone
    # else waiting for them ends after the batch (shared/services/line.py).
    sold_out: tuple[int, ...] = field(default=(), compare=False)


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def build_event(outbox_row: dict[str, Any]) -> dict[str, Any]:
    """The versioned event consumers receive, from an outbox row (id, type, occurred_at, data)."""
    return {
        "version": EVENT_VERSION,
        "id": str(outbox_row["id"]),
        "type": outbox_row["type"],
        "source": EVENT_SOURCE,
        "occurred_at": _iso(outbox_row["occurred_at"]),
        "data": outbox_row["data"],
    }


def full_jitter_backoff(attempt: int, retry_after_s: float | None, *, base_s: float, cap_s: int) -> int:
    """Seconds before attempt + 1: uniform in [0, base * 2^(attempt-1)] (full jitter), capped, and
    never sooner than the server asked (Retry-After). Whole seconds, as SQS and PGMQ take them."""
    ceiling = min(float(cap_s), base_s * 2 ** max(0, attempt - 1))
    delay = _jitter.uniform(0.0, ceiling)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return int(min(cap_s, math.ceil(delay)))


class ThroughputEstimator:
    """Payments per second from samples of the finished-jobs counter the queries already read.

    Keeps status polls O(1): no query over the jobs table to estimate an ETA. Knows when it does
    not know: no rate before a second of samples shows progress, and none once the counter has
    stood still for a while (the queue is stalled: no worker, the database away), so a shopper is
    never promised a wait nobody measured.
    """

    WINDOW_S = 60.0
    # No job finished for this long (or for three average intervals at a slow rate): stalled.
    STALL_S = 10.0

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()
        self._last_count: int | None = None
        self._last_change_at = 0.0

    def observe(self, finished: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if finished != self._last_count:
            self._last_count, self._last_change_at = finished, now
        if self._samples and now - self._samples[-1][0] < 0.5:
            return
        self._samples.append((now, finished))
        while self._samples and now - self._samples[0][0] > self.WINDOW_S:
            self._samples.popleft()

    def rate(self, now: float | None = None) -> float | None:
        """Measured payments per second, or None when there is no measurement to go by."""
        if len(self._samples) < 2:
            return None
        (t0, c0), (t1, c1) = self._samples[0], self._samples[-1]
        if t1 - t0 < 1.0 or c1 <= c0:
            return None
        per_s = (c1 - c0) / (t1 - t0)
        now = time.monotonic() if now is None else now
        if now - self._last_change_at > max(self.STALL_S, 3 / per_s):
            return None
        return per_s
