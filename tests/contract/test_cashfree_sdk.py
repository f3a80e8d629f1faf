"""The official cashfree-pg SDK against the simulator: every endpoint the project uses, every answer
validated by the SDK's pydantic models, and webhook signatures checked by PGVerifyWebhookSignature."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

from local.gateway_sim import Simulator
from shared.gateway_signatures import cashfree_webhook_signature, verify_cashfree_webhook
from tests.contract.conftest import API_VERSION, CASHFREE, CashfreeSdk, Inbox, eventually

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


def _raw_post(sim: Simulator, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    """What the SDK cannot send (its request models refuse it first), sent as Cashfree would receive it."""
    request = urllib.request.Request(
        sim.url + "/pg" + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "x-client-id": CASHFREE[0],
            "x-client-secret": CASHFREE[1],
            "x-api-version": API_VERSION,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _paid(cashfree_sdk: CashfreeSdk, sim: Simulator, order_id: str) -> None:
    assert cashfree_sdk.call("PGCreateOrder", create_order_request=_order_request(order_id))["status"] == 200
    sim.cashfree_checkout(order_id, "success")


def test_a_currency_cashfree_does_not_take_and_notes_under_three_characters_are_refused(
    cashfree_sdk: CashfreeSdk, sim: Simulator
) -> None:
    # A currency code: the SDK sends any string, the API refuses one it does not know
    answer = cashfree_sdk.call(
        "PGCreateOrder", create_order_request={**_order_request("pq-80"), "order_currency": "XYZ"}
    )
    assert (answer["status"], answer["error"]["code"], answer["error_valid"]) == (400, "order_currency_invalid", True)
    # Notes: the SDK's models require 3 characters or more, so they go raw; the answer is still Cashfree's
    status, refused = _raw_post(sim, "/orders", {**_order_request("pq-81"), "order_note": "ok"})
    assert (status, refused["code"], refused["type"]) == (400, "order_note_invalid", "invalid_request_error")
    assert cashfree_sdk.validate("BadRequestError", json.dumps(refused))["ok"]
    _paid(cashfree_sdk, sim, "pq-82")
    status, refused = _raw_post(
        sim, "/orders/pq-82/refunds", {"refund_amount": 1, "refund_id": "pqr82", "refund_note": "no"}
    )
    assert (status, refused["code"]) == (400, "refund_note_invalid")
    # And none of them made anything
    assert cashfree_sdk.call("PGFetchOrder", order_id="pq-80")["status"] == 404
    assert cashfree_sdk.call("PGFetchOrder", order_id="pq-81")["status"] == 404
    assert cashfree_sdk.call("PGOrderFetchRefunds", order_id="pq-82")["data"] == []


def test_a_merchant_refund_is_listed_by_the_official_sdk_and_announced(
    cashfree_sdk: CashfreeSdk, sim: Simulator, inbox: Inbox
) -> None:
    # Given a paid order
    _paid(cashfree_sdk, sim, "pq-90")
    # When the merchant refunds part of it on the dashboard
    refund = sim.merchant_refund("cashfree", "pq-90", 2_500)
    # Then the SDK's models read it among the order's refunds, under the id the merchant's dashboard chose
    assert refund["refund_id"].startswith("dashboard_")
    listed = cashfree_sdk.call("PGOrderFetchRefunds", order_id="pq-90")["data"]
    assert [(r["refund_id"], r["refund_amount"]) for r in listed] == [(refund["refund_id"], 25.0)]
    fetch = {"order_id": "pq-90", "refund_id": refund["refund_id"]}
    eventually(lambda: cashfree_sdk.call("PGOrderFetchRefund", **fetch)["data"]["refund_status"] == "SUCCESS")
    # And what is left to refund is less by its amount
    over = cashfree_sdk.call(
        "PGOrderCreateRefund",
        order_id="pq-90",
        order_create_refund_request={"refund_amount": 124.51, "refund_id": "pqr90"},
    )
    assert (over["status"], over["error"]["code"]) == (400, "refund_amount_invalid")
    # And its REFUND_STATUS_WEBHOOK passes the SDK's model
    assert sim.wait_webhooks()
    (hook,) = [r for r in inbox.of("/cashfree") if b"REFUND_STATUS_WEBHOOK" in r.body]
    assert cashfree_sdk.validate("RefundWebhook", hook.body.decode())["ok"]


def test_scripted_cashfree_refunds_cancel_then_hold_and_clear_with_a_webhook_at_each_final_status(
    cashfree_sdk: CashfreeSdk, sim: Simulator, inbox: Inbox
) -> None:
    # Given refunds scripted to be cancelled, then held (clearing to SUCCESS after refund_settle_s)
    _paid(cashfree_sdk, sim, "pq-95")
    sim.config.cashfree_refund_outcomes = ["CANCELLED", "ONHOLD"]

    def refund(refund_id: str) -> dict[str, Any]:
        request = {"refund_amount": 149.5, "refund_id": refund_id, "refund_note": "unfulfillable"}
        return cashfree_sdk.call("PGOrderCreateRefund", order_id="pq-95", order_create_refund_request=request)

    def status(refund_id: str) -> str:
        answer = cashfree_sdk.call("PGOrderFetchRefund", order_id="pq-95", refund_id=refund_id)
        return str(answer["data"]["refund_status"])

    # When the first refund is cancelled, then the whole amount is refunded again under a new refund_id
    assert refund("pqr95a")["status"] == 200
    eventually(lambda: status("pqr95a") == "CANCELLED")
    assert refund("pqr95b")["status"] == 200
    # Then the held one ends SUCCESS, and the script is used up
    eventually(lambda: status("pqr95b") == "SUCCESS")
    assert sim.config.cashfree_refund_outcomes == []
    # And Cashfree announced the two final statuses only (no webhook for ONHOLD), each valid for the SDK
    assert sim.wait_webhooks()
    hooks = [r for r in inbox.of("/cashfree") if b"REFUND_STATUS_WEBHOOK" in r.body]
    assert [json.loads(h.body)["data"]["refund"]["refund_status"] for h in hooks] == ["CANCELLED", "SUCCESS"]
    assert all(cashfree_sdk.validate("RefundWebhook", h.body.decode())["ok"] for h in hooks)
