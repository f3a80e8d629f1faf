"""What the API answers, as models: the handlers declare them per route, so the OpenAPI document
(local/openapi.py) is generated from the handlers themselves and cannot drift from them.

They describe; the handlers still build plain dicts (tests check the two agree, by fuzzing).
"""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel, ConfigDict, Field

from shared.domain import (
    CHECKOUT_FIELDS,
    IDEMPOTENCY_KEY_MAX,
    IDEMPOTENCY_KEY_PATTERN,
    CheckoutRequest,
    PaymentRequest,
)
from shared.gateways import GatewayName, PaymentMethod

JSON = "application/json"


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    """Every error: {"error": {"code", "message", "details"?}}."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


class JobRefund(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["refunding", "refunded", "refund_failed"] = Field(
        description="refunding: on its way back; refund_failed: not returned yet, an operator is on it"
    )
    amount_paise: int


class JobMoney(BaseModel):
    model_config = ConfigDict(extra="forbid")

    captured_paise: int
    applied_paise: int
    refunded_paise: int
    refunding_paise: int
    owed_paise: int


class JobView(BaseModel):
    """A job as its owner sees it; position, eta and poll advice only while it waits."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    status: Literal["queued", "processing", "succeeded", "failed"]
    order_id: int
    status_url: str
    position: int | None = None
    eta_seconds: float | None = None
    poll_after_ms: int | None = None
    payment_id: int | None = None
    reason: str | None = None
    refund: JobRefund | None = Field(default=None, description="a failed gateway job: the money on its way back")
    dead_lettered: bool | None = Field(default=None, description="its message is in the DLQ: waits for a redrive")
    cancel_requested: bool | None = Field(
        default=None,
        description="a gateway job its shopper asked to leave the line (DELETE): its turn releases or refunds "
        "the payment instead of fulfilling the order, and it fails with reason cancelled",
    )
    money: JobMoney | None = Field(default=None, description="a dead-lettered gateway job: where its money is")
    queue_number: int | None = Field(
        default=None,
        description="while waiting: position = queue_number - the largest serving seen (this view's, or "
        "GET /v1/queue/now-serving's)",
    )
    serving: int | None = Field(
        default=None,
        description="while waiting: the counter this position was measured against (the jobs known to have "
        "ended ahead of this one); the shared figure's may be larger once the line's front has passed jobs that "
        "left it, and a cached figure may be older, so a client keeps the largest serving it has seen",
    )
    now_serving_url: str | None = Field(
        default=None,
        description="the shared figure to wait on, not this job: relative to the API locally, CloudFront's "
        "absolute URL of it on AWS",
    )


class NowServing(BaseModel):
    """How far the line has moved and how fast: the same for every waiting shopper, cached for a second."""

    model_config = ConfigDict(extra="forbid")

    serving: int = Field(
        description="jobs ahead of everyone still waiting that have ended: those that ended in their turn, and "
        "those that left the line (cancelled, sold out) once its front passed them; never decreases"
    )
    per_s: float | None = Field(description="jobs ending in their turn per second lately; null while none do")
    as_of: str = Field(description="when the figure was read (ISO 8601)")


class RazorpayCheckout(BaseModel):
    """new Razorpay({key: key_id, order_id, amount, currency, handler}).open(), script_url loaded first."""

    model_config = ConfigDict(extra="forbid")

    key_id: str
    order_id: str
    script_url: str = Field(description="Razorpay Standard Checkout's checkout.js (locally the simulator's)")


class CashfreeCheckout(BaseModel):
    """Cashfree({mode}).checkout({paymentSessionId: payment_session_id, redirectTarget}), script_url loaded first."""

    model_config = ConfigDict(extra="forbid")

    order_id: str
    payment_session_id: str | None
    mode: Literal["sandbox", "production"]
    script_url: str = Field(description="Cashfree's JS SDK v3 (locally the simulator's)")


class CheckoutView(BaseModel):
    """A checkout as its owner sees it: what the page opens the gateway's checkout with."""

    model_config = ConfigDict(extra="forbid")

    checkout_id: str
    order_id: int
    method: GatewayName
    amount_paise: int
    currency: str
    status: Literal["created", "paid", "failed", "expired", "refunding", "refunded", "refund_failed"] = Field(
        description="refunding: the money is on its way back; refund_failed: not returned yet, an operator is on it"
    )
    razorpay: RazorpayCheckout | None = None
    cashfree: CashfreeCheckout | None = None
    job_id: str | None = None


class OrderJob(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: str
    status: Literal["queued", "processing", "succeeded", "failed"]


class OrderView(BaseModel):
    """An order: what it costs, its items as the order lists them (with each product's name), its latest job."""

    model_config = ConfigDict(extra="forbid")

    order_id: int
    user_id: str
    status: Literal["pending", "paid", "cancelled"]
    total_paise: int
    currency: str
    items: list[dict[str, Any]] = Field(description='[{"product_id", "quantity", "unit_price_paise", "name"}]')
    payment_method: str | None
    created_at: str
    paid_at: str | None
    job: OrderJob | None = Field(description="the order's latest payment job, to follow instead of paying again")


class ShopperOrderView(OrderView):
    payment_methods: list[PaymentMethod] = Field(
        description="the methods this deployment takes (a gateway's only with its credentials)"
    )


class OrderList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str
    orders: list[OrderView] = Field(description="newest first")


class MerchantJobView(JobView):
    user_id: str
    requested_by: str | None = Field(description="the merchant client that started it; null: the shopper did")


class PaymentRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: str
    order_id: int
    method: str
    status: Literal["queued", "processing", "succeeded", "failed"]
    reason: str | None
    payment_id: int | None
    amount_paise: int | None = Field(description="what the payment transaction took (succeeded jobs)")
    currency: str | None
    gateway_ref: str | None
    requested_by: str | None
    cancel_requested: bool = Field(
        description="its shopper asked to leave the line with it (a gateway job): its payment goes back instead "
        "of paying the order"
    )
    created_at: str
    finished_at: str | None


class MerchantPayment(PaymentRecord):
    user_id: str


class PaymentList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str
    payments: list[PaymentRecord] = Field(description="newest first")


class WalletAdjustment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str
    wallet_transaction_id: int
    kind: Literal["credit", "debit"]
    amount_paise: int
    reason: str
    balance_paise: int = Field(description="the balance right after this entry")
    currency: str


class WalletEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wallet_transaction_id: int
    kind: Literal["credit", "debit"]
    amount_paise: int
    balance_after_paise: int
    reason: str | None
    order_id: int | None
    created_at: str


class WalletView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str
    balance_paise: int
    currency: str
    entries: list[WalletEntry] = Field(description="the latest ledger entries, newest first")


class EventDelivery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Literal["pending", "published"] = Field(description="published: handed to the bus (SNS, the webhook)")
    published_at: str | None
    redeliveries: int
    redelivery_requested_at: str | None


class PaymentEvent(BaseModel):
    """PaymentSucceeded / PaymentFailed as consumers receive it, with its delivery state."""

    model_config = ConfigDict(extra="forbid")

    version: str
    id: str
    type: Literal["PaymentSucceeded", "PaymentFailed"]
    source: str
    occurred_at: str
    data: dict[str, Any]
    delivery: EventDelivery


class EventList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[PaymentEvent] = Field(description="oldest first")
    next_since: str | None = Field(description="a full page: ask again with since=next_since&after=next_after")
    next_after: str | None = Field(description="the last event's id, to page on past it (with next_since)")


class WebhookAck(BaseModel):
    model_config = ConfigDict(extra="forbid")

    received: bool


class DeadLetteredJob(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: str | None = Field(description="null when the message named no job")
    user_id: str | None
    order_id: int | None
    status: str = Field(description="the job's status, or unknown when no such job exists")
    last_error: str
    deliveries: int
    age_s: float = Field(description="seconds since the message went to the DLQ")


class OwedRefund(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refund_id: int = Field(description="retry it with POST /v1/refunds/{refund_id}/retry")
    job_id: str
    order_id: int
    gateway: str
    amount_paise: int
    attempts: int
    last_error: str | None = Field(description="the gateway's refusal or its last word on the refund")
    age_s: float | None = Field(description="seconds since it became owed")


class RefundAfterFulfilment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refund_id: int
    job_id: str
    order_id: int = Field(description="the order, still paid, whose money was partly or wholly given back")
    gateway: str
    amount_paise: int
    state: str = Field(description="pending or succeeded at the gateway")
    age_s: float | None = Field(description="seconds since we learned of it")


class RefundsOpen(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refunding: int = Field(description="refunds pending at the gateway, or failed and due to be sent again")
    refunding_paise: int
    oldest_refunding_age_s: float | None
    owed: int = Field(description="refunds whose attempts are spent: money owed to shoppers")
    owed_paise: int
    oldest_owed_age_s: float | None
    owed_refunds: list[OwedRefund] = Field(description="the oldest owed refunds, at most 20")
    after_fulfilment: int = Field(
        description="refunds made at the gateway (e.g. in its dashboard) for orders already fulfilled, last 30 days:"
        " the orders stay paid; the shop decides what they mean"
    )
    after_fulfilment_paise: int
    refunds_after_fulfilment: list[RefundAfterFulfilment] = Field(description="the newest of them, at most 20")


class RefundRetry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refund_id: int
    outcome: str = Field(description="scheduled (the sweeper sends it within a minute) or not_owed")
    state: str = Field(description="the refund's state now")
    amount_paise: int


class DlqDrop(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: str
    status: str = Field(
        description="failed (reason dropped_by_operator), or unknown for a message naming no job of ours"
    )
    reason: str | None = Field(description="dropped_by_operator; null for a job of ours that never existed")
    status_when_dropped: str = Field(description="queued or processing, or unknown")
    dropped_by: str = Field(description="the operator who dropped it: their token's subject")
    dropped_at: str = Field(description="when, ISO 8601")


class QueueStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depth: int
    in_flight: int
    dlq_depth: int
    dlq_jobs: list[DeadLetteredJob] = Field(description="the newest jobs in the DLQ, at most 20")
    awaiting_gateway: int = Field(description="gateway jobs waiting for the gateway's verdict, no queue message")
    gateway_refunds_failed: int = Field(description="gateway refunds owed: attempts spent, an operator must retry")
    refunds: RefundsOpen = Field(description="gateway refunds on their way back, and those owed")
    oldest_message_age_s: float
    throughput_per_minute: int
    eta_to_drain_s: float | None


class MetricsWindow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    processed: int
    succeeded: int
    failed: int
    success_rate: float | None
    decline_rate: float | None = Field(description="jobs that failed for a business reason, of those processed")
    error_rate: float | None = Field(
        description="deliveries that failed (faults, gateway or database away), of all deliveries: not declines"
    )
    failed_deliveries: int = Field(description="deliveries that failed (transient included), not business failures")
    avg_wait_s: float | None
    p50_wait_s: float | None
    p95_wait_s: float | None


class Metrics(BaseModel):
    model_config = ConfigDict(extra="forbid")

    windows: dict[str, MetricsWindow]


class DbHealth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reachable: bool
    latency_ms: float | None = None
    connections_in_use: int | None = None
    max_connections: int | None = None
    error: str | None = None


class RedriveResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["completed", "started"]
    moved: int
    task_handle: str | None = None


def model_response(description: str, model: type[BaseModel]) -> OpenAPIResponse:
    return {"description": description, "content": {JSON: {"model": model}}}


def error(description: str) -> OpenAPIResponse:
    return model_response(description, ErrorBody)


# Answered for any route: the JWT authorizer (401, and 403 for a token without the route's scope), a
# fault (500), no database connection to be had (503, with Retry-After).
COMMON_ERRORS: dict[int, OpenAPIResponse] = {
    401: error("unauthorized (missing, malformed, forged, expired or wrong-audience token) or invalid_subject"),
    403: error("forbidden: the token lacks the route's scope (payments/pay)"),
    500: error("internal_error: a fault on our side"),
    503: error("service_busy: no database connection to be had; retry after Retry-After with the same request"),
}
OPERATOR_ERRORS: dict[int, OpenAPIResponse] = COMMON_ERRORS | {
    403: error("forbidden: the token lacks the operator scope"),
}
MERCHANT_ERRORS: dict[int, OpenAPIResponse] = COMMON_ERRORS | {
    403: error("forbidden: the token lacks the merchant scope (payments/merchant)"),
}


def responses(success: int, description: str, model: type[BaseModel], **errors: str) -> dict[int, OpenAPIResponse]:
    """The success response always listed: declaring any `responses` drops Powertools' default 200."""
    declared: dict[int, OpenAPIResponse] = {success: model_response(description, model)}
    for name, text in errors.items():
        declared[int(name.removeprefix("e"))] = error(text)
    return declared


def _payment_bodies() -> dict[str, Any]:
    """POST /v1/payments as the server takes it: one body per method (the fields each method allows
    and requires), built from PaymentRequest's own field rules so the two cannot drift apart."""
    model = PaymentRequest.model_json_schema()
    fields = model["properties"]

    def field(name: str) -> dict[str, Any]:
        schema = dict(fields[name])
        schema.pop("default", None)
        # "X or null" in the model: a body either leaves a field out or gives it as the method needs it.
        for option in schema.pop("anyOf", []):
            if option.get("type") != "null":
                schema |= option
        return schema

    variants = []
    for method in fields["method"]["enum"]:
        extra = list(CHECKOUT_FIELDS.get(method, ()))
        variants.append(
            {
                "title": f"{method.capitalize()}Payment",
                "type": "object",
                "additionalProperties": False,
                "required": ["order_id", "method", *extra],
                "properties": {"order_id": field("order_id"), "method": {"type": "string", "enum": [method]}}
                | {name: field(name) for name in extra},
            }
        )
    return {"title": model["title"], "description": model.get("description", ""), "oneOf": variants}


PAYMENT_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {JSON: {"schema": _payment_bodies()}},
    }
}


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {JSON: {"schema": model.model_json_schema()}}}}


CHECKOUT_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {JSON: {"schema": CheckoutRequest.model_json_schema()}},
    }
}
IDEMPOTENCY_KEY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "description": "1-255 printable ASCII characters, no space at either end; the same key and body: the same job",
    "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX, "pattern": IDEMPOTENCY_KEY_PATTERN},
}
