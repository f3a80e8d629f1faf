"""Our adapters against the simulator: typed answers in paise, idempotent writes, typed refusals, and
rate-limit headers read into GatewayRetryable."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from local.gateway_sim import Simulator
from shared.domain import GatewayRejected, GatewayRetryable
from shared.gateways.cashfree.client import CashfreeApi, CashfreeGateway
from shared.gateways.razorpay.client import RazorpayApi, RazorpayGateway
from shared.ports import RefundState
from tests.contract.conftest import CASHFREE, RAZORPAY, Inbox


@pytest.fixture
def rzp(sim: Simulator) -> RazorpayGateway:
    return RazorpayGateway(sim.url, lambda: RAZORPAY, timeout_s=2.0)


@pytest.fixture
def cf(sim: Simulator) -> CashfreeGateway:
    return CashfreeGateway(sim.url + "/pg", lambda: CASHFREE, "2025-01-01", timeout_s=2.0)


def _refunds_settle() -> None:
    time.sleep(0.15)  # the simulator settles refunds after refund_settle_s (0.05 s in these tests)


def test_the_adapters_are_the_ports_the_flow_uses(rzp: RazorpayGateway, cf: CashfreeGateway) -> None:
    razorpay: RazorpayApi = rzp
    cashfree: CashfreeApi = cf
    assert (razorpay.fetch_order.__name__, cashfree.order_payments.__name__) == ("fetch_order", "order_payments")


def test_a_razorpay_order_is_created_found_by_receipt_paid_captured_and_refunded_in_paise(
    rzp: RazorpayGateway, sim: Simulator
) -> None:
    # Given an order created for our order 42 (receipt) and its shopper (notes)
    order = rzp.create_order(14_950, "INR", "pq-order-42", {"pq_order_id": "42", "pq_user": "u1"})
    assert (order.status, order.amount_paise, order.receipt, order.notes["pq_user"]) == (
        "created",
        14_950,
        "pq-order-42",
        "u1",
    )
    assert rzp.find_order_by_receipt("pq-order-42") == rzp.fetch_order(order.order_id)
    assert rzp.find_order_by_receipt("pq-order-43") is None
    # When the shopper pays
    paid = sim.razorpay_checkout(order.order_id)
    payment = rzp.fetch_payment(paid["razorpay_payment_id"])
    # Then the payment names its order, and capture completes it
    assert (payment.status, payment.order_id, payment.amount_paise, payment.amount_refunded_paise) == (
        "authorized",
        order.order_id,
        14_950,
        0,
    )
    assert rzp.capture(payment.ref, 14_950, "INR").status == "captured"
    assert rzp.fetch_order(order.order_id).status == "paid"
    assert [p.ref for p in rzp.order_payments(order.order_id)] == [payment.ref]
    # And a refund sent twice with one reference is one refund, followed to processed
    first = rzp.refund(payment.ref, 14_950, "INR", "pq0123456789abcdef")
    again = rzp.refund(payment.ref, 14_950, "INR", "pq0123456789abcdef")
    assert first.refund_id == again.refund_id and first.state is RefundState.PENDING
    _refunds_settle()
    assert rzp.fetch_refund(payment.ref, first.refund_id).state is RefundState.SUCCEEDED
    assert rzp.fetch_payment(payment.ref).amount_refunded_paise == 14_950
    assert sim.stats()["razorpay"]["refunds"] == 1


def test_a_razorpay_payment_without_an_order_is_never_captured(rzp: RazorpayGateway, sim: Simulator) -> None:
    payment_id = sim.create_razorpay_payment(15_000)
    assert rzp.fetch_payment(payment_id).order_id is None
    with pytest.raises(GatewayRetryable) as refused:
        rzp.capture(payment_id, 15_000, "INR")
    assert refused.value.kind == "unknown_outcome"  # settled by fetching: still authorized, no order
    assert sim.stats()["razorpay"]["captures_without_order"] == 1
    with pytest.raises(GatewayRejected) as unknown:
        rzp.fetch_order("order_DoesNotExist01")
    assert (unknown.value.status, unknown.value.code) == (400, "BAD_REQUEST_ERROR")
    with pytest.raises(ValueError, match="40 characters"):
        rzp.create_order(100, "INR", "r" * 41, {})


def test_a_razorpay_429_carries_its_retry_after(rzp: RazorpayGateway, sim: Simulator) -> None:
    sim.config.storm_until = time.time() + 5
    sim.config.retry_after_s = 3
    with pytest.raises(GatewayRetryable) as throttled:
        rzp.fetch_order("order_any")
    assert (throttled.value.kind, throttled.value.retry_after_s) == ("throttled", 3.0)


def test_a_cashfree_order_is_created_once_its_attempts_read_and_its_refund_followed(
    cf: CashfreeGateway, sim: Simulator, inbox: Inbox
) -> None:
    # Given an order we name, for a customer derived from our user, expiring soon
    expires = datetime.now(UTC) + timedelta(minutes=20)
    args = {
        "customer_id": "pqUser42",
        "customer_phone": "9999999999",
        "expires_at": expires,
        "notify_url": inbox.url + "/cashfree",
        "tags": {"pq_order_id": "42"},
        "idempotency_key": "pq-42-checkout",
    }
    order = cf.create_order("pq-42", 14_950, "INR", **args)  # type: ignore[arg-type]
    # When the same create is sent again (its answer was lost), it is the same order
    assert cf.create_order("pq-42", 14_950, "INR", **args) == order  # type: ignore[arg-type]
    assert (order.status, order.amount_paise, order.customer_id, order.notes) == (
        "ACTIVE",
        14_950,
        "pqUser42",
        {"pq_order_id": "42"},
    )
    assert order.payment_session_id and order.payment_session_id.startswith("session_")
    # And another body under our order id is refused as a conflict
    with pytest.raises(GatewayRejected) as taken:
        cf.create_order("pq-42", 100, "INR", **{**args, "idempotency_key": "another"})  # type: ignore[arg-type]
    assert taken.value.status == 409
    # When the shopper fails, then pays
    sim.cashfree_checkout("pq-42", "failed")
    sim.cashfree_checkout("pq-42", "success")
    attempts = cf.order_payments("pq-42")
    assert [(a.gateway_status, a.status) for a in attempts] == [("FAILED", "failed"), ("SUCCESS", "captured")]
    assert all(a.amount_paise == 14_950 and a.order_id == "pq-42" for a in attempts)
    assert cf.fetch_order("pq-42").status == "PAID"
    # Then a refund with our reference is followed to its final state
    refund = cf.refund("pq-42", 14_950, "INR", "pq0123456789abcdef")
    assert (refund.state, refund.merchant_ref, refund.amount_paise) == (
        RefundState.PENDING,
        "pq0123456789abcdef",
        14_950,
    )
    _refunds_settle()
    assert cf.fetch_refund("pq-42", "pq0123456789abcdef").state is RefundState.SUCCEEDED
    assert cf.refund("pq-42", 14_950, "INR", "pq0123456789abcdef").refund_id == refund.refund_id
    assert sim.stats()["cashfree"]["refunds"] == 1


def test_a_cancelled_cashfree_refund_is_failed_and_onhold_is_still_pending(cf: CashfreeGateway, sim: Simulator) -> None:
    for n, outcome in ((1, "CANCELLED"), (2, "ONHOLD")):
        sim.config.cashfree_refund_outcome = outcome
        oid = sim.create_cashfree_order(10_000)
        cf.refund(oid, 10_000, "INR", f"pqrefund{n:04d}")
        _refunds_settle()
        expected = RefundState.FAILED if outcome == "CANCELLED" else RefundState.PENDING
        assert cf.fetch_refund(oid, f"pqrefund{n:04d}").state is expected


def test_cashfree_limits_become_a_throttled_retry_with_cashfrees_wait(cf: CashfreeGateway, sim: Simulator) -> None:
    # Given the sandbox's 30 Get Payments a minute, all used
    sim.config.cashfree_limits = "sandbox"
    oid = sim.create_cashfree_order(10_000)
    for _ in range(30):
        cf.order_payments(oid)
    # When one more is sent
    with pytest.raises(GatewayRetryable) as throttled:
        cf.order_payments(oid)
    # Then it is throttled with the wait Cashfree names (x-ratelimit-retry), other endpoints still open
    assert throttled.value.kind == "throttled"
    assert throttled.value.retry_after_s is not None and 1 <= throttled.value.retry_after_s <= 60
    assert cf.fetch_order(oid).status == "PAID"
    assert sim.stats()["cashfree"]["rate_limited"] == 1
