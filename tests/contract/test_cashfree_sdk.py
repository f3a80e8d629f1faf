"""The official cashfree-pg SDK against the simulator: every endpoint the project uses, every answer
validated by the SDK's pydantic models, and webhook signatures checked by PGVerifyWebhookSignature."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from local.gateway_sim import Simulator
from shared.gateway_signatures import cashfree_webhook_signature, verify_cashfree_webhook
from tests.contract.conftest import CASHFREE, CashfreeSdk, Inbox

RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-retry", "x-ratelimit-type")


def _order_request(order_id: str, inbox: Inbox | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {
        "order_id": order_id,
        "order_amount": 149.5,
        "order_currency": "INR",
        "customer_details": {"customer_id": "pqUser42", "customer_phone": "9999999999"},
        "order_expiry_time": (datetime.now(UTC) + timedelta(minutes=20)).isoformat(timespec="seconds"),
        "order_tags": {"pq_order": "42", "pq_user": "pqUser42"},
    }
    if inbox is not None:
        request["order_meta"] = {"notify_url": inbox.url + "/notify"}
    return request


def _has_rate_headers(answer: dict[str, Any]) -> bool:
    headers = {k.lower() for k in answer["headers"]}
    return all(name in headers for name in RATE_HEADERS)


def test_every_cashfree_endpoint_the_project_uses_answers_the_official_sdk(
    cashfree_sdk: CashfreeSdk, sim: Simulator, inbox: Inbox
) -> None:
    # Given an order created through the SDK, with our order id and an idempotency key
    request = _order_request("pq-42", inbox)
    created = cashfree_sdk.call("PGCreateOrder", create_order_request=request, x_idempotency_key="pq-42-create")
    assert created["status"] == 200, created
    order = created["data"]
    assert (order["order_id"], order["order_status"], order["order_amount"]) == ("pq-42", "ACTIVE", 149.5)
    assert order["payment_session_id"].startswith("session_") and isinstance(order["cf_order_id"], str)
    replayed = cashfree_sdk.call("PGCreateOrder", create_order_request=request, x_idempotency_key="pq-42-create")
    assert replayed["data"]["cf_order_id"] == order["cf_order_id"]

    # When the shopper fails once, drops once, then pays
    for outcome in ("failed", "user_dropped", "success"):
        sim.cashfree_checkout("pq-42", outcome)
    fetched = cashfree_sdk.call("PGFetchOrder", order_id="pq-42")
    payments = cashfree_sdk.call("PGOrderFetchPayments", order_id="pq-42")

    # Then the SDK's models read the order and every attempt (string cf_payment_id included)
    assert fetched["data"]["order_status"] == "PAID"
    assert [p["payment_status"] for p in payments["data"]] == ["FAILED", "USER_DROPPED", "SUCCESS"]
    assert all(isinstance(p["cf_payment_id"], str) for p in payments["data"])
    assert payments["data"][0]["error_details"]["error_reason"] == "bank_rejected"

    # And a refund through the SDK is idempotent, then followed to SUCCESS
    refund_request = {"refund_amount": 149.5, "refund_id": "pqrefund42", "refund_note": "unfulfillable"}
    refund = cashfree_sdk.call(
        "PGOrderCreateRefund",
        order_id="pq-42",
        order_create_refund_request=refund_request,
        x_idempotency_key="pqrefund42",
    )
    again = cashfree_sdk.call(
        "PGOrderCreateRefund",
        order_id="pq-42",
        order_create_refund_request=refund_request,
        x_idempotency_key="pqrefund42",
    )
    assert refund["data"]["refund_status"] == "PENDING" and again["data"] == refund["data"]
    time.sleep(0.2)
    settled = cashfree_sdk.call("PGOrderFetchRefund", order_id="pq-42", refund_id="pqrefund42")
    listed = cashfree_sdk.call("PGOrderFetchRefunds", order_id="pq-42")
    assert settled["data"]["refund_status"] == "SUCCESS" and settled["data"]["processed_at"]
    assert [r["refund_id"] for r in listed["data"]] == ["pqrefund42"]
    assert sim.stats()["cashfree"]["refunds"] == 1
    for answer in (created, replayed, fetched, payments, refund, settled, listed):
        assert _has_rate_headers(answer), answer["headers"]


def test_cashfree_refusals_read_as_the_sdks_error_models(cashfree_sdk: CashfreeSdk, sim: Simulator) -> None:
    assert cashfree_sdk.call("PGCreateOrder", create_order_request=_order_request("pq-9"))["status"] == 200
    bad_customer = _order_request("pq-10")
    bad_customer["customer_details"]["customer_id"] = "no spaces allowed"
    cases = {
        "missing order": (cashfree_sdk.call("PGFetchOrder", order_id="pq-nope"), 404, "order_not_found"),
        "duplicate order id": (
            cashfree_sdk.call("PGCreateOrder", create_order_request=_order_request("pq-9")),
            409,
            "order_already_exists",
        ),
        "bad customer id": (
            cashfree_sdk.call("PGCreateOrder", create_order_request=bad_customer),
            400,
            "customer_id_invalid",
        ),
        "refund of an unpaid order": (
            cashfree_sdk.call(
                "PGOrderCreateRefund",
                order_id="pq-9",
                order_create_refund_request={"refund_amount": 1, "refund_id": "pqr9"},
            ),
            400,
            "order_not_paid",
        ),
    }
    reused = _order_request("pq-11")
    cashfree_sdk.call("PGCreateOrder", create_order_request=reused, x_idempotency_key="pq-11-key")
    cases["reused idempotency key"] = (
        cashfree_sdk.call(
            "PGCreateOrder", create_order_request={**reused, "order_amount": 2}, x_idempotency_key="pq-11-key"
        ),
        422,
        "request_invalid",
    )
    for name, (answer, status, code) in cases.items():
        assert answer["status"] == status, name
        assert answer["error_valid"], (name, answer["error_model"])
        assert answer["error"]["code"] == code, name
        assert _has_rate_headers(answer), name


def test_cashfree_per_minute_limit_answers_429_with_the_rate_limit_model(
    cashfree_sdk: CashfreeSdk, sim: Simulator
) -> None:
    # Given the sandbox's published limits (Get Refund: the strictest, 20 here)
    sim.config.cashfree_limits = "sandbox"
    cashfree_sdk.call("PGCreateOrder", create_order_request=_order_request("pq-77"))
    answers = [cashfree_sdk.call("PGOrderFetchRefunds", order_id="pq-77") for _ in range(21)]
    # Then the 21st in the minute is refused in RateLimitError's shape with a wait to respect
    assert [a["status"] for a in answers[:20]] == [200] * 20
    limited = answers[20]
    assert limited["status"] == 429 and limited["error_valid"], limited
    headers = {k.lower(): v for k, v in limited["headers"].items()}
    assert headers["x-ratelimit-remaining"] == "0" and int(headers["x-ratelimit-retry"]) >= 1
    assert int(answers[0]["headers"]["x-ratelimit-remaining"]) == 19


def test_simulator_webhooks_pass_the_sdks_verifier_and_ours_and_forgeries_fail_both(
    cashfree_sdk: CashfreeSdk, sim: Simulator, inbox: Inbox
) -> None:
    # Given a Cashfree order paid after a failed attempt, and a refund (webhooks to the dashboard URL)
    cashfree_sdk.call("PGCreateOrder", create_order_request=_order_request("pq-55"))
    sim.cashfree_checkout("pq-55", "failed")
    sim.cashfree_checkout("pq-55", "success")
    cashfree_sdk.call(
        "PGOrderCreateRefund",
        order_id="pq-55",
        order_create_refund_request={"refund_amount": 149.5, "refund_id": "pqr55"},
    )
    time.sleep(0.2)
    assert sim.wait_webhooks()
    received = inbox.of("/cashfree")
    assert [json.loads(r.body)["type"] for r in received] == [
        "PAYMENT_FAILED_WEBHOOK",
        "PAYMENT_SUCCESS_WEBHOOK",
        "REFUND_STATUS_WEBHOOK",
    ]
    secret = CASHFREE[1]
    for r in received:
        body, timestamp, signature = r.body.decode(), r.headers["x-webhook-timestamp"], r.headers["x-webhook-signature"]
        # Then the SDK's verifier and ours accept the real delivery, and its body fits the SDK's model
        sdk = cashfree_sdk.verify_webhook(signature, body, timestamp)
        assert sdk["ok"] and verify_cashfree_webhook(r.body, timestamp, signature, secret)
        model = "RefundWebhook" if sdk["type"] == "REFUND_STATUS_WEBHOOK" else "PaymentWebhook"
        assert cashfree_sdk.validate(model, body)["ok"]
        assert r.headers["x-idempotency-key"] and r.headers["x-webhook-version"] == "2025-01-01"
        assert len(timestamp) == 13  # milliseconds
        # And every forgery fails both: another body, another timestamp, another key, a junk signature
        forged = [
            (signature, body.replace("149.5", "1.0"), timestamp),
            (signature, body, str(int(timestamp) + 1)),
            (cashfree_webhook_signature(timestamp, r.body, "not the secret"), body, timestamp),
            ("", body, timestamp),
            ("x" * 44, body, timestamp),
        ]
        for sig, raw, ts in forged:
            assert not cashfree_sdk.verify_webhook(sig, raw, ts)["ok"]
            assert not verify_cashfree_webhook(raw.encode(), ts, sig, secret)
    payment = json.loads(received[1].body)["data"]["payment"]
    assert isinstance(payment["cf_payment_id"], str) and payment["payment_status"] == "SUCCESS"


def test_the_orders_notify_url_receives_its_webhooks(cashfree_sdk: CashfreeSdk, sim: Simulator, inbox: Inbox) -> None:
    cashfree_sdk.call("PGCreateOrder", create_order_request=_order_request("pq-60", inbox))
    sim.cashfree_checkout("pq-60", "user_dropped")
    assert sim.wait_webhooks()
    assert [json.loads(r.body)["type"] for r in inbox.of("/notify")] == ["PAYMENT_USER_DROPPED_WEBHOOK"]
    assert inbox.of("/cashfree") == []
