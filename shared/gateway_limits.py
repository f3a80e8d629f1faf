"""One token bucket per gateway and endpoint, from the published limits.

The SQL limiter (pq_take_tokens(bucket, rate_per_s, burst, n)) keeps one bucket per name; the flow asks
bucket() for the name, rate and burst of the call it is about to make. A bucket of rate r and size b
grants at most b + r * 60 requests in any minute; choosing b + r * 60 = share * limit keeps every minute
under the published limit with room to spare:

    burst = max(1, burst_share * limit)      rate = (share * limit - burst) / 60
"""

from __future__ import annotations

from shared.gateways.registry import GATEWAYS
from shared.settings import Settings


def limit_per_min(settings: Settings, gateway: str, endpoint: str) -> float:
    """The per-minute limit we plan against: an override, else the gateway's published or default figure
    (its package's published_per_min)."""
    override = settings.gateway_limits_per_min.get(f"{gateway}.{endpoint}")
    if override is not None:
        return float(override)
    return GATEWAYS[gateway].published_per_min(settings, endpoint)


def bucket(settings: Settings, gateway: str, endpoint: str) -> tuple[str, float, float]:
    """(bucket name, rate per second, burst) for pq_take_tokens; every minute stays under the limit."""
    limit = limit_per_min(settings, gateway, endpoint)
    allowed = settings.gateway_limit_share * limit
    # At least one whole request fits the bucket (a smaller one never grants a token), and the rate is
    # never 0 (a bucket that never refills stops that endpoint for good): for a limit of a request or
    # two a minute, the first minute may see one request more than the share.
    burst = max(1.0, min(settings.gateway_burst_share * limit, allowed))
    rate = (allowed - burst if allowed > burst else allowed) / 60.0
    return f"{gateway}.{endpoint}", rate, burst
