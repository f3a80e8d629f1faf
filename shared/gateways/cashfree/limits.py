"""Cashfree PG's published limits, per endpoint and environment."""

from __future__ import annotations

from typing import Literal

from shared.settings import Settings

# Requests per minute per endpoint (cashfree.com/docs/api-reference/payments/rate-limits, "Rate limit in
# Production" / "Rate limits in Sandbox"; type Account). The sandbox's Get Refund cell was not legible in
# the copy we read: its lowest published figure (Get Settlements, 20) stands in. Listing an order's
# refunds has no published limit of its own: it takes Get Refund's.
LIMITS_PER_MIN: dict[str, dict[str, float]] = {
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


# The published limit each kind of the flow's requests takes its token from (PaymentGateway.endpoints).
STEP_ENDPOINTS = {
    "create": "create_order",
    "fetch": "get_order",
    "refund": "create_refund",
    "find_refund": "get_refund",
    "refunds": "get_refund",
}


def environment(settings: Settings) -> Literal["production", "sandbox"]:
    """Which set applies: cashfree_environment, else the base URL's (sandbox.cashfree.com is the sandbox)."""
    if settings.cashfree_environment is not None:
        return settings.cashfree_environment
    return "sandbox" if "sandbox.cashfree.com" in settings.cashfree_base_url else "production"


def published_per_min(settings: Settings, endpoint: str) -> float:
    published = LIMITS_PER_MIN[environment(settings)]
    if endpoint not in published:
        raise ValueError(f"unknown Cashfree endpoint {endpoint!r}: one of {sorted(published)}")
    return published[endpoint]
