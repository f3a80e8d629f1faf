"""Steps the gateway tests share: a simulator, gateway-enabled settings, paying and draining."""

from __future__ import annotations

import time
from typing import Any

from local.gateway_sim import Simulator
from local.workers import read_fifo
from shared.bootstrap import App
from shared.db import Database
from shared.domain import PaymentRequest
from shared.services.intake import Accepted, accept_payment
from tests.integration.helpers import deliver

RAZORPAY = ("rzp_test_k1", "rzp_secret_s1")
CASHFREE = ("cf_app_k1", "cf_secret_s1")


def gateway_settings(sim: Simulator) -> dict[str, Any]:
    """Settings fields that point both gateways at the simulator, with test-sized backoffs."""
    return {
        "razorpay_base_url": sim.url,
        "razorpay_key_id": RAZORPAY[0],
        "razorpay_key_secret": RAZORPAY[1],
        "cashfree_base_url": sim.url + "/pg",
        "cashfree_client_id": CASHFREE[0],
        "cashfree_client_secret": CASHFREE[1],
        "gateway_timeout_s": 0.5,
        "gateway_backoff_base_s": 0.5,
        "gateway_backoff_cap_s": 2,
    }


def order_of(db: Database, user_id: str) -> dict[str, Any]:
    row = db.fetch_one(
        "SELECT id, total_paise FROM orders WHERE user_id = %s AND order_status = 'pending' ORDER BY id", (user_id,)
    )
    assert row is not None
    return row


def pay_gateway(app: App, sim: Simulator, user_id: str, method: str, **payment: Any) -> Accepted:
    """The shopper paid the order at the gateway's checkout, then asks us to complete it."""
    order = order_of(app.db, user_id)
    amount = payment.pop("amount_paise", order["total_paise"])
    if method == "razorpay":
        ref = {"razorpay_payment_id": sim.create_razorpay_payment(amount, **payment)}
    else:
        ref = {"cashfree_order_id": sim.create_cashfree_order(amount, **payment)}
    request = PaymentRequest(order_id=order["id"], method=method, **ref)  # type: ignore[arg-type]
    return accept_payment(app, user_id, f"key-{user_id}-{order['id']}", request)


def drain(app: App, timeout_s: float = 30.0) -> int:
    """Play the event source mapping until the queue is empty; return the deliveries made."""
    deadline = time.monotonic() + timeout_s
    deliveries = 0
    while time.monotonic() < deadline:
        messages = read_fifo(app.db, "payments", visibility_timeout_s=30, qty=10)
        if messages:
            deliveries += len(messages)
            deliver(app, messages)
            continue
        if app.db.fetch_one("SELECT count(*) AS n FROM pgmq.q_payments") == {"n": 0}:
            return deliveries
        time.sleep(0.1)
    raise AssertionError("queue not drained in time")


def jobs(db: Database) -> list[dict[str, Any]]:
    return db.fetch_all("SELECT id::text, status, reason, method FROM payment_jobs ORDER BY queue_seq")
