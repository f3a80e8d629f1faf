"""Razorpay's limits: it publishes no numbers ("Razorpay uses a request Rate Limiter", api/pagination), so
every endpoint the flow calls gets the conservative razorpay_limit_per_min; its 429s are backed off."""

from __future__ import annotations

from shared.settings import Settings

ENDPOINTS = (
    "create_order",  # POST /v1/orders
    "fetch_order",  # GET /v1/orders/{id}
    "find_orders",  # GET /v1/orders?receipt=
    "order_payments",  # GET /v1/orders/{id}/payments
    "fetch_payment",  # GET /v1/payments/{id}
    "capture",  # POST /v1/payments/{id}/capture
    "refund",  # POST /v1/payments/{id}/refund
    "fetch_refund",  # GET /v1/payments/{id}/refunds/{refund_id}
)

# The published limit each kind of the flow's requests takes its token from (PaymentGateway.endpoints).
STEP_ENDPOINTS = {
    "create": "create_order",
    "fetch": "fetch_payment",
    "refund": "refund",
    "find_refund": "fetch_refund",
    "refunds": "fetch_refund",
}


def published_per_min(settings: Settings, endpoint: str) -> float:
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unknown Razorpay endpoint {endpoint!r}: one of {list(ENDPOINTS)}")
    return settings.razorpay_limit_per_min
