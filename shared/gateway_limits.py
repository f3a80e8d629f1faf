"""One token bucket per gateway and endpoint, from the published limits.

The SQL limiter (pq_take_tokens(bucket, rate_per_s, burst, n)) keeps one bucket per name; the flow asks
bucket() for the name, rate and burst of the call it is about to make. A bucket of rate r and size b
grants at most b + r * 60 requests in any minute; choosing b + r * 60 = share * limit keeps every minute
under the published limit with room to spare:

    burst = max(1, burst_share * limit)      rate = (share * limit - burst) / 60
"""

from __future__ import annotations

from typing import Literal

from shared.settings import Settings

Gateway = Literal["razorpay", "cashfree"]

# Requests per minute per endpoint, Cashfree PG (cashfree.com/docs/api-reference/payments/rate-limits,
# "Rate limit in Production" / "Rate limits in Sandbox"; type Account). The sandbox's Get Refund cell
# was not legible in the copy we read: its lowest published figure (Get Settlements, 20) stands in.
# Listing an order's refunds has no published limit of its own: it takes Get Refund's.
CASHFREE_LIMITS_PER_MIN: dict[str, dict[str, float]] = {
    "production": {
        "create_order": 200,
        "get_order": 400,
        "get_payments": 100,
        "create_refund": 100,
        "get_refund": 30,
    },
    "sandbox": {
        "create_order": 30,
        "get_order": 60,
        "get_payments": 30,
        "create_refund": 30,
        "get_refund": 20,
    },
}
# The Razorpay endpoints the checkout flow calls; each gets razorpay_limit_per_min (none are published).
RAZORPAY_ENDPOINTS = (
    "create_order",  # POST /v1/orders
    "fetch_order",  # GET /v1/orders/{id}
    "find_orders",  # GET /v1/orders?receipt=
    "order_payments",  # GET /v1/orders/{id}/payments
    "fetch_payment",  # GET /v1/payments/{id}
    "capture",  # POST /v1/payments/{id}/capture
    "refund",  # POST /v1/payments/{id}/refund
    "fetch_refund",  # GET /v1/payments/{id}/refunds/{refund_id}
)


def cashfree_environment(settings: Settings) -> Literal["production", "sandbox"]:
    if settings.cashfree_environment is not None:
        return settings.cashfree_environment
    return "sandbox" if "sandbox.cashfree.com" in settings.cashfree_base_url else "production"


def limit_per_min(settings: Settings, gateway: Gateway, endpoint: str) -> float:
    """The per-minute limit we plan against: an override, else the published or default figure."""
    override = settings.gateway_limits_per_min.get(f"{gateway}.{endpoint}")
    if override is not None:
        return float(override)
    if gateway == "cashfree":
        published = CASHFREE_LIMITS_PER_MIN[cashfree_environment(settings)]
        if endpoint not in published:
            raise ValueError(f"unknown Cashfree endpoint {endpoint!r}: one of {sorted(published)}")
        return published[endpoint]
    if endpoint not in RAZORPAY_ENDPOINTS:
        raise ValueError(f"unknown Razorpay endpoint {endpoint!r}: one of {list(RAZORPAY_ENDPOINTS)}")
    return settings.razorpay_limit_per_min


def bucket(settings: Settings, gateway: Gateway, endpoint: str) -> tuple[str, float, float]:
    """(bucket name, rate per second, burst) for pq_take_tokens; every minute stays under the limit."""
    limit = limit_per_min(settings, gateway, endpoint)
    allowed = settings.gateway_limit_share * limit
    # At least one whole request fits the bucket (a smaller one never grants a token), and the rate is
    # never 0 (a bucket that never refills stops that endpoint for good): for a limit of a request or
    # two a minute, the first minute may see one request more than the share.
    burst = max(1.0, min(settings.gateway_burst_share * limit, allowed))
    rate = (allowed - burst if allowed > burst else allowed) / 60.0
    return f"{gateway}.{endpoint}", rate, burst
