"""Razorpay and Cashfree payments against the gateway simulator and a real PostgreSQL."""

from __future__ import annotations

import hashlib
import time

import pytest

from local.gateway_sim import Simulator
from shared.bootstrap import App
from shared.domain import PaymentRequest
from shared.errors import DomainError
from shared.gateway_signatures import verify_razorpay_checkout
from shared.http import http_status
from shared.services.gateway import process_gateway_job
from shared.services.intake import accept_payment, parse_payment_request
from shared.settings import Settings
from tests.integration.gateway_helpers import (
    RAZORPAY,
    drain,
    jobs,
    no_violations,
    open_for,
    order_of,
    pay_at_gateway,
    pay_gateway,
    payment_request,
    pgmq_gateway_settings,
)


@pytest.fixture
def settings(database_url: str, sim: Simulator) -> Settings:
    return pgmq_gateway_settings(database_url, sim)


def test_razorpay_payment_is_captured_once_and_completes_the_order(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given demo-user-1 authorized the order's total at Razorpay
    order = order_of(app.db, "demo-user-1")
    wallets_before = app.db.fetch_one("SELECT sum(balance_paise) AS s FROM wallets")
    accepted = pay_gateway(app, sim, "demo-user-1", "razorpay")

    # When the processor takes the job
    drain(app)

    # Then it is captured once, recorded with its gateway reference, the order is paid, no wallet moved
    job = app.db.fetch_one("SELECT status, payment_id FROM payment_jobs WHERE id = %s", (accepted.body["job_id"],))
    assert job is not None and job["status"] == "succeeded"
    payment = app.db.fetch_one("SELECT * FROM payment_transactions WHERE order_id = %s", (order["id"],))
    assert payment is not None
    assert (payment["method"], payment["amount_paise"], payment["status"]) == (
        "razorpay",
        order["total_paise"],
        "captured",
    )
    assert payment["gateway_ref"].startswith("pay_")
    assert app.db.fetch_one("SELECT order_status FROM orders WHERE id = %s", (order["id"],)) == {"order_status": "paid"}
    assert app.db.fetch_one("SELECT sum(balance_paise) AS s FROM wallets") == wallets_before
    stats = sim.stats()
    assert (stats["captures"], stats["double_captures"]) == (1, 0)
    event = app.db.fetch_one("SELECT message FROM pgmq.q_payment_events")
    assert event is not None and event["message"]["detail"]["data"]["method"] == "razorpay"
    no_violations(app)


def test_cashfree_payment_is_verified_by_fetch_and_completes_the_order(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    accepted = pay_gateway(app, sim, "demo-user-2", "cashfree")

    drain(app)

    assert jobs(app.db)[0] | {"id": None} == {"id": None, "status": "succeeded", "reason": None, "method": "cashfree"}
    assert accepted.body["status"] == "queued"
    # the checkout's order, then the processor's fetch of the order, of its payments and of its refunds
    # (any made in Cashfree's dashboard: an order with refunds is never fulfilled)
    assert sim.stats()["by_endpoint"] == {
        "POST /pg/orders": 1,
        "GET /pg/orders/{id}": 1,
        "GET /pg/orders/{id}/payments": 1,
        "GET /pg/orders/{id}/refunds": 1,
    }
    no_violations(app)


def test_gateway_payment_costs_a_fixed_number_of_db_round_trips(app: App, sim: Simulator, demo: dict[str, int]) -> None:
    # Given one job of each gateway, already received
    rzp = pay_gateway(app, sim, "demo-user-1", "razorpay").body["job_id"]
    cf = pay_gateway(app, sim, "demo-user-2", "cashfree").body["job_id"]
    costs = {}
    for method, job in (("razorpay", rzp), ("cashfree", cf)):
        before = app.db.round_trips
        outcome = process_gateway_job(app, job, method, receipt_handle="payments:0:1", receive_count=1)
        costs[method] = app.db.round_trips - before
        assert outcome.outcome == "succeeded"
    # Then: begin (+ fetch token), capture token, complete for Razorpay; begin (+ Get Order token),
    # Get Payments token, Get Refunds token (refunds made in the dashboard), complete for Cashfree
    assert costs == {"razorpay": 3, "cashfree": 4}


def test_amount_mismatch_fails_the_job_without_capture_and_leaves_the_order(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given a Razorpay payment of the checkout's amount, and the order's total changed since
    order = order_of(app.db, "demo-user-1")
    pay_gateway(app, sim, "demo-user-1", "razorpay")
    app.db.execute("UPDATE orders SET total_paise = total_paise - 100 WHERE id = %s", (order["id"],))

    drain(app)

    assert [(j["status"], j["reason"]) for j in jobs(app.db)] == [("failed", "amount_mismatch")]
    assert sim.stats()["captures"] == 0
    assert app.db.fetch_one("SELECT order_status FROM orders WHERE id = %s", (order["id"],)) == {
        "order_status": "pending"
    }
    assert app.db.fetch_one("SELECT count(*) AS n FROM payment_transactions") == {"n": 0}
    no_violations(app)


def test_captured_payment_for_an_unfulfillable_order_is_refunded_recorded_and_failed(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given a Cashfree payment (captured at checkout) for an order whose product sold out since its checkout
    # opened (a checkout of an order already sold out is refused: test_gateway_checkout.py)
    order = order_of(app.db, "demo-user-3")
    view = open_for(app, "demo-user-3", "cashfree")
    app.db.execute(
        """UPDATE products SET stock = 0
            WHERE id IN (SELECT (e->>'product_id')::bigint FROM orders, jsonb_array_elements(items) e
                          WHERE orders.id = %s)""",
        (order["id"],),
    )
    accept_payment(app, "demo-user-3", "k-sold-out", payment_request(view, pay_at_gateway(sim, view)))

    drain(app)

    # Then the money goes back, the refund is recorded, the job fails and nothing was sold
    assert [(j["status"], j["reason"]) for j in jobs(app.db)] == [("failed", "out_of_stock")]
    assert sim.stats()["refunds"] == 1
    refund = app.db.fetch_one("SELECT amount_paise, currency, refund_ref, reason FROM gateway_refunds")
    assert refund is not None
    assert (refund["amount_paise"], refund["currency"], refund["reason"]) == (
        order["total_paise"],
        "INR",
        "out_of_stock",
    )
    assert app.db.fetch_one("SELECT count(*) AS n FROM payment_transactions") == {"n": 0}
    assert app.db.fetch_one("SELECT count(*) AS n FROM order_items") == {"n": 0}
    no_violations(app)

    # And the refunded payment (Cashfree still lists it as SUCCESS) can never pay again, even once
    # the product is back in stock: submitting it again answers the failed job
    app.db.execute("UPDATE products SET stock = 100")
    failed = app.db.fetch_one("SELECT id::text FROM payment_jobs")
    assert failed is not None
    again = accept_payment(app, "demo-user-3", "a-new-key", PaymentRequest(order_id=order["id"], method="cashfree"))
    assert (again.body["job_id"], again.body["status"], again.body["reason"]) == (
        failed["id"],
        "failed",
        "out_of_stock",
    )
    drain(app)
    assert app.db.fetch_one("SELECT count(*) AS n FROM payment_jobs") == {"n": 1}
    assert sim.stats()["refunds"] == 1


@pytest.mark.parametrize("fault", ["fail_after_send", "timeout_after_send"])
def test_capture_whose_answer_is_lost_is_settled_by_fetch_never_captured_twice(
    app: App, sim: Simulator, demo: dict[str, int], fault: str
) -> None:
    # Given the gateway applies the next capture but answers 502, or only after we gave up
    accepted = pay_gateway(app, sim, "demo-user-1", "razorpay")
    setattr(sim.config, fault, 1)
    sim.config.hang_s = 1.0

    deliveries = drain(app)

    assert deliveries == 2
    assert jobs(app.db)[0]["status"] == "succeeded"
    stats = sim.stats()
    assert (stats["captures"], stats["double_captures"]) == (1, 0)
    assert stats["by_endpoint"]["POST /v1/payments/{id}/capture"] == 1  # the second delivery only fetched
    attempt = app.db.fetch_one(
        "SELECT deliveries, unavailable, capture_sent_at FROM gateway_attempts WHERE job_id = %s",
        (accepted.body["job_id"],),
    )
    assert attempt is not None
    assert (attempt["deliveries"], attempt["unavailable"]) == (2, 1) and attempt["capture_sent_at"] is not None
    no_violations(app)


def test_a_429_storm_ends_with_every_payment_succeeded_and_none_captured_twice(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given every demo user paid at Razorpay, and the gateway answers 429 to everything for 1.5 s
    for user in ("demo-user-1", "demo-user-2", "demo-user-3"):
        pay_gateway(app, sim, user, "razorpay")
    sim.config.storm_until = time.time() + 1.5
    sim.config.retry_after_s = 1.0

    drain(app)

    assert {j["status"] for j in jobs(app.db)} == {"succeeded"}
    stats = sim.stats()
    assert stats["responses_429"] >= 3
    assert (stats["captures"], stats["double_captures"]) == (3, 0)
    throttled = app.db.fetch_one("SELECT sum(throttled) AS n FROM gateway_attempts")
    assert throttled is not None and throttled["n"] == stats["responses_429"]
    no_violations(app)


def test_retries_exhausted_send_the_job_to_the_dlq_without_charging(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given a gateway that answers 503 to everything, and three deliveries allowed
    object.__setattr__(app.settings, "max_receive_count", 3)
    accepted = pay_gateway(app, sim, "demo-user-1", "razorpay")
    sim.config.rate_5xx = 1.0

    drain(app, timeout_s=20)

    dead = app.db.fetch_all("SELECT message FROM pgmq.q_payments_dlq")
    assert [d["message"]["job_id"] for d in dead] == [accepted.body["job_id"]]
    assert jobs(app.db)[0]["status"] == "processing"  # visible to operators, redrivable
    assert sim.stats()["captures"] == 0
    assert app.db.fetch_one("SELECT count(*) AS n FROM payment_transactions") == {"n": 0}
    no_violations(app)


def test_the_same_gateway_payment_cannot_pay_two_orders(app: App, sim: Simulator, demo: dict[str, int]) -> None:
    # Given demo-user-1 paid the checkout of one order, and has a second order of the same amount
    view = open_for(app, "demo-user-1", "razorpay")
    handed = pay_at_gateway(sim, view)
    first = accept_payment(app, "demo-user-1", "first", payment_request(view, handed))
    other_order = app.db.fetch_one(
        """INSERT INTO orders (user_id, items, total_paise) SELECT user_id, items, total_paise FROM orders
            WHERE user_id = 'demo-user-1' LIMIT 1 RETURNING id"""
    )
    assert other_order is not None

    # When the same signed payment is submitted for the other order
    with pytest.raises(DomainError) as refused:
        accept_payment(
            app,
            "demo-user-1",
            "another-key",
            payment_request(view, handed).model_copy(update={"order_id": other_order["id"]}),
        )

    # Then it is refused: the payment belongs to the first order's checkout
    assert (http_status(refused.value), refused.value.code) == (409, "gateway_order_mismatch")
    assert app.db.fetch_one("SELECT count(*) AS n FROM payment_jobs") == {"n": 1}
    assert first.body["status"] == "queued"


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ('{"order_id": 1, "method": "razorpay"}', "validation_error", "body"),
        ('{"order_id": 1, "method": "razorpay", "razorpay_payment_id": "pay_1"}', "bare_gateway_reference", None),
        ('{"order_id": 1, "method": "cashfree", "cashfree_order_id": "o_1"}', "bare_gateway_reference", None),
        (
            '{"order_id": 1, "method": "razorpay", "razorpay_payment_id": "nope", "razorpay_order_id": "order_1",'
            ' "razorpay_signature": "ab"}',
            "validation_error",
            "razorpay_payment_id",
        ),
        (
            '{"order_id": 1, "method": "wallet", "cashfree_order_id": "order_1"}',
            "validation_error",
            "cashfree_order_id",
        ),
        ('{"order_id": 1, "method": "wallet", "razorpay_signature": "ab"}', "validation_error", "body"),
    ],
)
def test_gateway_requests_without_a_valid_checkout_payment_are_refused(body: str, code: str, field: str | None) -> None:
    with pytest.raises(DomainError) as refused:
        parse_payment_request(body, ("wallet", "razorpay", "cashfree"))
    assert (http_status(refused.value), refused.value.code) == (422, code)
    if field is not None:
        assert refused.value.details["field"] == field


def test_a_gateway_that_is_not_configured_is_refused_as_not_supported() -> None:
    with pytest.raises(DomainError) as refused:
        parse_payment_request('{"order_id": 1, "method": "cashfree"}', ("wallet",))
    assert refused.value.code == "method_not_supported"


def test_wallet_fingerprint_is_unchanged_by_the_gateway_fields() -> None:
    # Jobs accepted before the gateway fields existed keep replaying with the same key and body.
    before = hashlib.sha256(b'{"method":"wallet","order_id":7}').hexdigest()
    assert PaymentRequest(order_id=7, method="wallet").fingerprint() == before


def test_official_razorpay_client_works_against_the_simulator(sim: Simulator) -> None:
    import razorpay

    client = razorpay.Client(auth=RAZORPAY, base_url=sim.url)
    order = client.order.create({"amount": 15_000, "currency": "INR", "receipt": "pq-test-1"})
    handed = sim.razorpay_checkout(order["id"])
    payment_id = handed["razorpay_payment_id"]

    # Our signature check agrees with the official client's, on the real signature and a forged one
    client.utility.verify_payment_signature(handed)
    assert verify_razorpay_checkout(order["id"], payment_id, handed["razorpay_signature"], RAZORPAY[1])
    forged = handed | {"razorpay_signature": "0" * 64}
    with pytest.raises(razorpay.errors.SignatureVerificationError):
        client.utility.verify_payment_signature(forged)
    assert not verify_razorpay_checkout(order["id"], payment_id, forged["razorpay_signature"], RAZORPAY[1])

    fetched = client.payment.fetch(payment_id)
    captured = client.payment.capture(payment_id, 15_000, {"currency": "INR"})
    with pytest.raises(razorpay.errors.BadRequestError, match="already been captured"):
        client.payment.capture(payment_id, 15_000, {"currency": "INR"})
    refund = client.payment.refund(payment_id, {"amount": 15_000, "receipt": "r1"})

    assert (fetched["status"], fetched["order_id"]) == ("authorized", order["id"])
    assert (captured["status"], captured["captured"]) == ("captured", True)
    assert (refund["entity"], refund["amount"], refund["payment_id"]) == ("refund", 15_000, payment_id)
    assert client.payment.fetch(payment_id)["status"] == "refunded"
    assert client.order.fetch(order["id"])["status"] == "paid"
    with pytest.raises(razorpay.errors.BadRequestError, match="api key provided is invalid"):
        razorpay.Client(auth=("rzp_test_k1", "wrong"), base_url=sim.url).payment.fetch(payment_id)


def test_a_payment_made_without_an_order_is_never_captured_by_the_strict_simulator(sim: Simulator) -> None:
    import razorpay

    client = razorpay.Client(auth=RAZORPAY, base_url=sim.url)
    payment_id = sim.create_razorpay_payment(15_000)

    with pytest.raises(razorpay.errors.BadRequestError, match="without an order_id cannot be captured"):
        client.payment.capture(payment_id, 15_000, {"currency": "INR"})
