"""Per-endpoint buckets from the published limits: no minute can exceed what the gateway allows."""

from __future__ import annotations

import pytest

from shared.gateway_limits import bucket, limit_per_min
from shared.gateways.cashfree.limits import LIMITS_PER_MIN as CASHFREE_LIMITS_PER_MIN
from shared.gateways.razorpay.limits import ENDPOINTS as RAZORPAY_ENDPOINTS
from shared.settings import Settings


def _most_in_any_minute(rate: float, burst: float) -> float:
    return burst + rate * 60


@pytest.mark.parametrize("environment", ["production", "sandbox"])
def test_every_cashfree_bucket_keeps_any_minute_under_its_published_limit(environment: str) -> None:
    settings = Settings(cashfree_environment=environment)  # type: ignore[arg-type]
    for endpoint, limit in CASHFREE_LIMITS_PER_MIN[environment].items():
        name, rate, burst = bucket(settings, "cashfree", endpoint)
        assert name == f"cashfree.{endpoint}"
        assert burst >= 1
        assert _most_in_any_minute(rate, burst) <= limit * settings.gateway_limit_share + 1e-9


@pytest.mark.parametrize("environment", ["production", "sandbox"])
def test_a_reserved_token_used_late_still_keeps_every_minute_under_the_published_limit(environment: str) -> None:
    # A reservation is honoured up to burst / rate seconds after its slot (pq_gateway_token): a token
    # sent that late lands in a window the bucket did not count it in, at most one burst's worth more.
    settings = Settings(cashfree_environment=environment)  # type: ignore[arg-type]
    published = {f"cashfree.{e}": limit for e, limit in CASHFREE_LIMITS_PER_MIN[environment].items()}
    published |= {f"razorpay.{e}": settings.razorpay_limit_per_min for e in RAZORPAY_ENDPOINTS}
    for name, limit in published.items():
        gateway, endpoint = name.split(".")
        _, rate, burst = bucket(settings, gateway, endpoint)
        assert _most_in_any_minute(rate, burst) + burst <= limit, name


def test_the_cashfree_environment_follows_the_base_url() -> None:
    sandbox = Settings(cashfree_base_url="https://sandbox.cashfree.com/pg")
    production = Settings(cashfree_base_url="https://api.cashfree.com/pg")
    assert limit_per_min(sandbox, "cashfree", "get_payments") == 30
    assert limit_per_min(production, "cashfree", "get_payments") == 100
    assert limit_per_min(production, "cashfree", "get_refund") == 30


def test_get_payments_in_production_is_a_fraction_of_the_old_single_bucket() -> None:
    # The old default, one bucket of 20/s + 10, allowed 1,210 Get Payments a minute against 100.
    _, rate, burst = bucket(Settings(), "cashfree", "get_payments")
    assert _most_in_any_minute(rate, burst) <= 100


def test_an_override_replaces_the_published_figure_and_razorpay_has_a_default_per_endpoint() -> None:
    settings = Settings(gateway_limits_per_min={"cashfree.get_order": 60, "razorpay.capture": 120})
    assert limit_per_min(settings, "cashfree", "get_order") == 60
    assert limit_per_min(settings, "razorpay", "capture") == 120
    for endpoint in RAZORPAY_ENDPOINTS:
        name, rate, burst = bucket(Settings(), "razorpay", endpoint)
        assert name == f"razorpay.{endpoint}" and rate > 0 and burst >= 1


def test_an_unknown_endpoint_is_an_error_not_an_unlimited_bucket() -> None:
    with pytest.raises(ValueError, match="unknown Cashfree endpoint"):
        bucket(Settings(), "cashfree", "pay_order")
    with pytest.raises(ValueError, match="unknown Razorpay endpoint"):
        bucket(Settings(), "razorpay", "payouts")


def test_limits_can_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PQ_GATEWAY_LIMITS_PER_MIN", '{"cashfree.get_payments": 50}')
    assert limit_per_min(Settings(), "cashfree", "get_payments") == 50
