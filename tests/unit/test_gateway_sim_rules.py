"""The simulator refuses what Razorpay and Cashfree refuse (state machines only, no sockets)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from local.gateway_sim_cashfree import CashfreeSim
from local.gateway_sim_razorpay import RazorpaySim


class Clock:
    """Collects what the gateway would do later (a refund settling) so a test runs it when it wants."""

    def __init__(self) -> None:
        self.later: list[Callable[[], object]] = []

    def schedule(self, delay_s: float, action: Callable[[], object]) -> None:
        self.later.append(action)

    def run(self) -> None:
        todo, self.later = self.later, []
        for action in todo:
            action()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def events() -> list[tuple[str, Any]]:
    return []


@pytest.fixture
def rzp(clock: Clock, events: list[tuple[str, Any]]) -> RazorpaySim:
    return RazorpaySim("key_secret", lambda name, entities: events.append((name, entities)), clock.schedule)


@pytest.fixture
def cf(clock: Clock, events: list[tuple[str, Any]]) -> CashfreeSim:
    return CashfreeSim(lambda kind, data, url: events.append((kind, data)), clock.schedule)


def _order(rzp: RazorpaySim, amount: int = 5_000, receipt: str = "pq-order-1") -> str:
    status, body, _ = rzp.create_order({"amount": amount, "currency": "INR", "receipt": receipt})
    assert status == 200
    return str(body["id"])


def _paid_payment(rzp: RazorpaySim) -> str:
    order_id = _order(rzp)
    _, checkout, _ = rzp.checkout(order_id, "success")
    status, _, _ = rzp.handle(
        "POST", f"/v1/payments/{checkout['razorpay_payment_id']}/capture", "", {}, {"amount": 5_000, "currency": "INR"}
    )
    assert status == 200
    return str(checkout["razorpay_payment_id"])


def test_a_razorpay_payment_without_an_order_cannot_be_captured(rzp: RazorpaySim) -> None:
    # Given an authorized payment made without an order (the old flow's kind)
    payment = rzp.new_payment(5_000, "INR", None, "authorized")
    # When it is captured
    capture = {"amount": 5_000, "currency": "INR"}
    status, body, _ = rzp.handle("POST", f"/v1/payments/{payment['id']}/capture", "", {}, capture)
    # Then Razorpay's error shape refuses it and nothing is captured
    assert status == 400
    assert body["error"]["code"] == "BAD_REQUEST_ERROR"
    assert set(body["error"]) >= {"description", "source", "step", "reason", "metadata"}
    assert rzp.payments[payment["id"]]["status"] == "authorized"
    assert (rzp.counters.captures, rzp.counters.captures_without_order) == (0, 1)


def test_capturing_an_order_payment_pays_the_order_once_and_a_second_capture_is_refused(
    rzp: RazorpaySim, events: list[tuple[str, Any]]
) -> None:
    payment_id = _paid_payment(rzp)
    order = rzp.orders[rzp.payments[payment_id]["order_id"]]
    assert (order["status"], order["amount_paid"], order["amount_due"], order["attempts"]) == ("paid", 5_000, 0, 1)
    capture = {"amount": 5_000, "currency": "INR"}
    status, body, _ = rzp.handle("POST", f"/v1/payments/{payment_id}/capture", "", {}, capture)
    assert status == 400 and "already been captured" in body["error"]["description"]
    assert (rzp.counters.captures, rzp.counters.double_captures) == (1, 1)
    assert [name for name, _ in events] == ["payment.authorized", "payment.captured", "order.paid"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": 99, "currency": "INR"}, "amount"),
        ({"amount": "5000", "currency": "INR"}, "amount"),
        ({"amount": 5_000, "currency": "INR", "receipt": "r" * 41}, "receipt"),
        ({"amount": 5_000, "currency": "INR", "notes": {str(i): "v" for i in range(16)}}, "notes"),
        ({"amount": 5_000}, "currency"),
    ],
)
def test_razorpay_orders_refuse_what_the_orders_api_refuses(rzp: RazorpaySim, body: dict[str, Any], field: str) -> None:
    status, answer, _ = rzp.handle("POST", "/v1/orders", "", {}, body)
    assert status == 400 and answer["error"]["field"] == field
    assert rzp.orders == {}


def test_orders_are_found_by_receipt_and_a_duplicate_receipt_is_counted(rzp: RazorpaySim) -> None:
    first = _order(rzp, receipt="pq-7")
    _order(rzp, receipt="pq-8")
    status, found, _ = rzp.handle("GET", "/v1/orders", "receipt=pq-7", {}, {})
    assert status == 200 and [o["id"] for o in found["items"]] == [first]
    _order(rzp, receipt="pq-7")
    assert rzp.counters.duplicate_receipts == 1


def test_a_refund_with_the_same_idempotency_key_and_body_is_the_same_refund(rzp: RazorpaySim, clock: Clock) -> None:
    payment_id = _paid_payment(rzp)
    headers = {"x-refund-idempotency": "pq0123456789abcdef"}
    _, first, _ = rzp.handle("POST", f"/v1/payments/{payment_id}/refund", "", headers, {"amount": 2_000})
    _, again, _ = rzp.handle("POST", f"/v1/payments/{payment_id}/refund", "", headers, {"amount": 2_000})
    status, other, _ = rzp.handle("POST", f"/v1/payments/{payment_id}/refund", "", headers, {"amount": 3_000})
    assert first["id"] == again["id"] and first["status"] == "pending"
    assert status == 400
    assert (
        other["error"]["description"] == "Different request with the same idempotency key has already been processed."
    )
    assert (rzp.counters.refunds, rzp.payments[payment_id]["amount_refunded"]) == (1, 2_000)
    assert rzp.payments[payment_id]["refund_status"] == "partial"
    clock.run()
    assert rzp.refunds[first["id"]]["status"] == "processed"


def test_a_short_idempotency_key_is_refused_and_a_failed_refund_gives_the_amount_back(
    rzp: RazorpaySim, clock: Clock, events: list[tuple[str, Any]]
) -> None:
    payment_id = _paid_payment(rzp)
    status, _, _ = rzp.handle("POST", f"/v1/payments/{payment_id}/refund", "", {"x-refund-idempotency": "short"}, {})
    assert status == 400 and rzp.counters.refunds == 0
    rzp.refund_outcome = "failed"
    _, refund, _ = rzp.handle("POST", f"/v1/payments/{payment_id}/refund", "", {}, {})
    assert rzp.payments[payment_id]["status"] == "refunded"
    clock.run()
    assert rzp.refunds[refund["id"]]["status"] == "failed"
    assert (rzp.payments[payment_id]["status"], rzp.payments[payment_id]["amount_refunded"]) == ("captured", 0)
    assert events[-1][0] == "refund.failed"


def test_a_failed_razorpay_payment_can_be_authorised_late_and_is_refunded_if_the_order_was_paid(
    rzp: RazorpaySim, events: list[tuple[str, Any]]
) -> None:
    order_id = _order(rzp)
    _, failed, _ = rzp.checkout(order_id, "failed")
    assert "razorpay_signature" not in failed and failed["error"]["metadata"]["order_id"] == order_id
    status, late, _ = rzp.late_authorize(failed["razorpay_payment_id"])
    assert status == 200 and late["payment"]["status"] == "authorized" and late["payment"]["late_authorized"]
    assert events[-1][0] == "payment.authorized"
    # A second failed payment on the same order, authorised late after the first was captured
    capture = {"amount": 5_000, "currency": "INR"}
    assert rzp.handle("POST", f"/v1/payments/{failed['razorpay_payment_id']}/capture", "", {}, capture)[0] == 200
    second = rzp.new_payment(5_000, "INR", order_id, "failed")
    _, late2, _ = rzp.late_authorize(second["id"])
    assert late2["payment"]["status"] == "refunded" and late2["auto_refund"]["amount"] == 5_000
    assert (rzp.counters.auto_refunds, rzp.counters.refunds) == (1, 0)  # Razorpay's refund, not one of ours


def _cf_order(cf: CashfreeSim, order_id: str = "pq-101", **extra: Any) -> dict[str, Any]:
    body = {
        "order_id": order_id,
        "order_amount": 50.25,
        "order_currency": "INR",
        "customer_details": {"customer_id": "user101", "customer_phone": "9999999999"},
        **extra,
    }
    status, order, _ = cf.handle("POST", ["orders"], {}, body)
    assert status == 200, order
    return dict(order)


def test_a_cashfree_order_has_attempts_with_string_ids_and_turns_paid_once(cf: CashfreeSim) -> None:
    order = _cf_order(cf)
    assert order["order_status"] == "ACTIVE" and order["payment_session_id"].startswith("session_")
    assert isinstance(order["cf_order_id"], str)
    for outcome in ("failed", "user_dropped", "pending", "success"):
        assert cf.checkout("pq-101", outcome)[0] == 200
    status, refused, _ = cf.checkout("pq-101", "success")
    assert (status, refused["code"]) == (400, "order_inactive")
    _, attempts, _ = cf.handle("GET", ["orders", "pq-101", "payments"], {}, {})
    assert [a["payment_status"] for a in attempts] == ["FAILED", "USER_DROPPED", "PENDING", "SUCCESS"]
    assert all(isinstance(a["cf_payment_id"], str) for a in attempts)
    assert cf.handle("GET", ["orders", "pq-101"], {}, {})[1]["order_status"] == "PAID"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"customer_details": {"customer_id": "user_1", "customer_phone": "9999999999"}}, "customer_id_invalid"),
        ({"customer_details": {"customer_id": "ab", "customer_phone": "9999999999"}}, "customer_id_invalid"),
        ({"customer_details": {"customer_id": "user1"}}, "customer_phone_invalid"),
        ({"order_amount": 0.5}, "order_amount_invalid"),
        ({"order_amount": 10.123}, "order_amount_invalid"),
        ({"order_expiry_time": "2001-01-01T00:00:00+05:30"}, "order_expiry_time_invalid"),
        ({"order_meta": {"notify_url": "http://example.com/hook"}}, "notify_url_invalid"),
        ({"order_id": "has space"}, "order_id_invalid"),
        ({"order_currency": "XYZ"}, "order_currency_invalid"),
        ({"order_currency": "inr"}, "order_currency_invalid"),
        ({"order_note": "ab"}, "order_note_invalid"),
        ({"order_note": "n" * 201}, "order_note_invalid"),
    ],
)
def test_cashfree_create_order_refuses_bad_fields(cf: CashfreeSim, change: dict[str, Any], code: str) -> None:
    body = {
        "order_id": "pq-1",
        "order_amount": 10,
        "order_currency": "INR",
        "customer_details": {"customer_id": "user1", "customer_phone": "9999999999"},
        **change,
    }
    status, answer, _ = cf.handle("POST", ["orders"], {}, body)
    assert (status, answer["code"], answer["type"]) == (400, code, "invalid_request_error")
    assert cf.orders == {}


def test_cashfree_idempotency_replays_the_same_answer_and_refuses_another_body(cf: CashfreeSim) -> None:
    body = {
        "order_id": "pq-5",
        "order_amount": 10,
        "order_currency": "INR",
        "customer_details": {"customer_id": "user5", "customer_phone": "9999999999"},
    }
    key = {"x-idempotency-key": "pq-5-create"}
    first = cf.handle("POST", ["orders"], key, body)
    again = cf.handle("POST", ["orders"], key, body)
    other = cf.handle("POST", ["orders"], key, {**body, "order_amount": 11})
    duplicate = cf.handle("POST", ["orders"], {}, body)
    assert first[0] == again[0] == 200 and first[1]["cf_order_id"] == again[1]["cf_order_id"]
    assert (other[0], other[1]["type"]) == (422, "idempotency_error")
    assert (duplicate[0], duplicate[1]["code"]) == (409, "order_already_exists")
    assert cf.counters.orders_created == 1


def test_cashfree_refunds_go_pending_then_final_and_onhold_is_not_final_nor_announced(
    cf: CashfreeSim, clock: Clock, events: list[tuple[str, Any]]
) -> None:
    _cf_order(cf)
    cf.checkout("pq-101", "success")
    cf.refund_outcome = "ONHOLD"
    status, refund, _ = cf.handle(
        "POST",
        ["orders", "pq-101", "refunds"],
        {"x-idempotency-key": "pqr1"},
        {"refund_amount": 50.25, "refund_id": "pqr1"},
    )
    assert (status, refund["refund_status"], refund["refund_type"]) == (200, "PENDING", "MERCHANT_INITIATED")
    assert cf.handle("POST", ["orders", "pq-101", "refunds"], {}, {"refund_amount": 1, "refund_id": "pqr2"})[0] == 400
    clock.run()
    assert cf.orders["pq-101"]["_refunds"]["pqr1"]["refund_status"] == "ONHOLD"
    assert [kind for kind, _ in events] == ["PAYMENT_SUCCESS_WEBHOOK"]  # no webhook for ONHOLD
    assert cf.settle_refund("pq-101", "pqr1", "SUCCESS")
    assert not cf.settle_refund("pq-101", "pqr1", "CANCELLED")
    assert [kind for kind, _ in events] == ["PAYMENT_SUCCESS_WEBHOOK", "REFUND_STATUS_WEBHOOK"]


def test_an_expired_cashfree_order_takes_no_checkout_but_can_still_turn_paid(cf: CashfreeSim) -> None:
    _cf_order(cf)
    cf.set_status("pq-101", "EXPIRED")
    assert cf.checkout("pq-101", "success")[1]["code"] == "order_inactive"
    status, late, _ = cf.late_success("pq-101")
    assert status == 200 and late["order"]["order_status"] == "PAID"
    assert late["payment"]["payment_status"] == "SUCCESS"


def test_cashfree_limits_are_per_endpoint_per_minute_with_headers_on_every_answer(cf: CashfreeSim) -> None:
    cf.limits = "sandbox"
    answers = [cf.admit("get_payments", 1_000.0 + i / 100) for i in range(31)]
    assert all(ok for ok, _ in answers[:30]) and not answers[30][0]
    assert answers[0][1] == {
        "x-ratelimit-limit": "30",
        "x-ratelimit-remaining": "29",
        "x-ratelimit-retry": "0",
        "x-ratelimit-type": "app_id",
    }
    refused = answers[30][1]
    assert refused["x-ratelimit-remaining"] == "0" and int(refused["x-ratelimit-retry"]) >= 59
    # Another endpoint has its own minute; a minute later Get Payments is open again
    assert cf.admit("get_order", 1_000.5)[0]
    assert cf.admit("get_payments", 1_061.0)[0]
    assert cf.counters.rate_limited == 1


# --- refusals the real APIs make ---------------------------------------------------------------


def _refusal(answer: tuple[int, Any, dict[str, str]]) -> tuple[int, str, str]:
    status, body, _ = answer
    return status, body["error"]["code"], body["error"]["description"]


def test_razorpay_writes_refuse_fields_they_do_not_take_and_change_nothing(rzp: RazorpaySim) -> None:
    # Given a captured payment of a paid order
    payment_id = _paid_payment(rzp)
    orders = len(rzp.orders)
    # When each write is sent a field it does not take
    order = rzp.handle("POST", "/v1/orders", "", {}, {"amount": 5_000, "currency": "INR", "partial_payment": True})
    capture = rzp.handle(
        "POST", f"/v1/payments/{payment_id}/capture", "", {}, {"amount": 5_000, "currency": "INR", "notes": {}}
    )
    refund = rzp.handle("POST", f"/v1/payments/{payment_id}/refund", "", {}, {"amount": 100, "reason": "x", "x2": 1})
    # Then Razorpay's answer names the fields, and no order, capture or refund is made
    bad = "BAD_REQUEST_ERROR"
    assert _refusal(order) == (400, bad, "partial_payment is/are not required and should not be sent")
    assert _refusal(capture) == (400, bad, "notes is/are not required and should not be sent")
    assert _refusal(refund) == (400, bad, "reason, x2 is/are not required and should not be sent")
    assert refund[1]["error"]["reason"] == "extra_field_sent"
    assert (len(rzp.orders), rzp.counters.captures, rzp.counters.double_captures, rzp.refunds) == (orders, 1, 0, {})


@pytest.mark.parametrize("currency", ["XYZ", "inr", "RUPEES"])
def test_a_razorpay_order_in_a_currency_razorpay_does_not_take_is_refused(rzp: RazorpaySim, currency: str) -> None:
    status, body, _ = rzp.handle("POST", "/v1/orders", "", {}, {"amount": 5_000, "currency": currency})
    assert (status, body["error"]["code"], body["error"]["field"]) == (400, "BAD_REQUEST_ERROR", "currency")
    assert rzp.orders == {}


def test_a_razorpay_capture_without_currency_is_refused_and_the_payment_stays_authorized(rzp: RazorpaySim) -> None:
    order_id = _order(rzp)
    _, checkout, _ = rzp.checkout(order_id, "success")
    payment_id = checkout["razorpay_payment_id"]
    status, body, _ = rzp.handle("POST", f"/v1/payments/{payment_id}/capture", "", {}, {"amount": 5_000})
    assert (status, body["error"]["field"]) == (400, "currency")
    assert (rzp.payments[payment_id]["status"], rzp.counters.captures) == ("authorized", 0)


@pytest.mark.parametrize("speed", ["instant", "NORMAL", ""])
def test_a_razorpay_refund_at_a_speed_razorpay_does_not_offer_is_refused(rzp: RazorpaySim, speed: str) -> None:
    payment_id = _paid_payment(rzp)
    answer = rzp.handle("POST", f"/v1/payments/{payment_id}/refund", "", {}, {"amount": 100, "speed": speed})
    assert _refusal(answer) == (400, "BAD_REQUEST_ERROR", "The selected speed is invalid.")
    assert rzp.payments[payment_id]["amount_refunded"] == 0
    for accepted in ("normal", "optimum"):
        assert (
            rzp.handle("POST", f"/v1/payments/{payment_id}/refund", "", {}, {"amount": 100, "speed": accepted})[0]
            == 200
        )


def test_a_short_cashfree_refund_note_is_refused(cf: CashfreeSim) -> None:
    _cf_order(cf)
    cf.checkout("pq-101", "success")
    body = {"refund_amount": 1, "refund_id": "pqr1", "refund_note": "ok"}
    status, answer, _ = cf.handle("POST", ["orders", "pq-101", "refunds"], {}, body)
    assert (status, answer["code"], answer["type"]) == (400, "refund_note_invalid", "invalid_request_error")
    assert cf.orders["pq-101"]["_refunds"] == {}


# --- refund outcomes, merchant refunds, released authorisations --------------------------------


def _refund(rzp: RazorpaySim, payment_id: str, amount: int, key: str) -> dict[str, Any]:
    status, body, _ = rzp.handle(
        "POST", f"/v1/payments/{payment_id}/refund", "", {"x-refund-idempotency": key}, {"amount": amount}
    )
    assert status == 200, body
    return dict(body)


def test_scripted_razorpay_refund_outcomes_are_taken_in_order_then_the_standing_one(
    rzp: RazorpaySim, clock: Clock, events: list[tuple[str, Any]]
) -> None:
    # Given refunds scripted to fail once, then the standing outcome (processed)
    payment_id = _paid_payment(rzp)
    rzp.refund_outcomes = ["failed"]
    # When a refund is made, replayed with its key (no new refund), and settles
    first = _refund(rzp, payment_id, 5_000, "pqrefund-0001")
    assert _refund(rzp, payment_id, 5_000, "pqrefund-0001")["id"] == first["id"]
    clock.run()
    # Then it failed and gave its amount back, so a new refund of it (a new key) is accepted and processed
    assert (rzp.refunds[first["id"]]["status"], rzp.payments[payment_id]["amount_refunded"]) == ("failed", 0)
    retried = _refund(rzp, payment_id, 5_000, "pqrefund-0002")
    clock.run()
    assert rzp.refunds[retried["id"]]["status"] == "processed" and rzp.refund_outcomes == []
    assert rzp.payments[payment_id]["status"] == "refunded"
    refund_events = [name for name, _ in events if name.startswith("refund.")]
    assert refund_events == ["refund.created", "refund.failed", "refund.created", "refund.processed"]


def test_a_scripted_cashfree_hold_clears_to_success_and_only_final_statuses_are_announced(
    cf: CashfreeSim, clock: Clock, events: list[tuple[str, Any]]
) -> None:
    # Given Cashfree refunds scripted: one held, then one cancelled
    _cf_order(cf)
    cf.checkout("pq-101", "success")
    cf.refund_outcomes = ["ONHOLD", "CANCELLED"]
    refunds = cf.orders["pq-101"]["_refunds"]
    assert cf.handle("POST", ["orders", "pq-101", "refunds"], {}, {"refund_amount": 20, "refund_id": "pqr1"})[0] == 200
    assert (
        cf.handle("POST", ["orders", "pq-101", "refunds"], {}, {"refund_amount": 30.25, "refund_id": "pqr2"})[0] == 200
    )
    # When refund_settle_s passes once: the first is on hold, the second cancelled
    clock.run()
    assert (refunds["pqr1"]["refund_status"], refunds["pqr2"]["refund_status"]) == ("ONHOLD", "CANCELLED")
    # Then the cancelled amount is refundable again under a new refund_id, and not beyond
    assert (
        cf.handle("POST", ["orders", "pq-101", "refunds"], {}, {"refund_amount": 30.26, "refund_id": "pqr3"})[0] == 400
    )
    assert (
        cf.handle("POST", ["orders", "pq-101", "refunds"], {}, {"refund_amount": 30.25, "refund_id": "pqr3"})[0] == 200
    )
    # And once refund_settle_s passes again the hold has cleared to SUCCESS; the standing outcome ended pqr3
    clock.run()
    assert [refunds[r]["refund_status"] for r in ("pqr1", "pqr2", "pqr3")] == ["SUCCESS", "CANCELLED", "SUCCESS"]
    announced = [(d["refund"]["refund_id"], d["refund"]["refund_status"]) for k, d in events if k.startswith("REFUND")]
    assert announced == [("pqr2", "CANCELLED"), ("pqr1", "SUCCESS"), ("pqr3", "SUCCESS")]
    assert cf.counters.refunds == 3


def test_a_razorpay_authorisation_left_uncaptured_is_released_and_a_captured_one_never(
    rzp: RazorpaySim, clock: Clock, events: list[tuple[str, Any]]
) -> None:
    # Given a capture timeout, and two authorised payments of which one is captured
    rzp.auth_release_s = 3.0
    captured = _paid_payment(rzp)
    _, left, _ = rzp.checkout(_order(rzp, receipt="pq-order-2"), "success")
    left_id = left["razorpay_payment_id"]
    # When the timeout passes
    clock.run()
    # Then the uncaptured one is refunded in full by Razorpay (captured false), the captured one untouched
    payment = rzp.payments[left_id]
    assert (payment["status"], payment["captured"], payment["amount_refunded"]) == ("refunded", False, 5_000)
    assert (rzp.payments[captured]["status"], rzp.payments[captured]["amount_refunded"]) == ("captured", 0)
    created = [e for name, e in events if name == "refund.created"]
    assert [e["payment"]["id"] for e in created] == [left_id] and created[0]["payment"]["captured"] is False
    clock.run()
    assert [name for name, _ in events][-1] == "refund.processed"
    status, _, _ = rzp.handle("POST", f"/v1/payments/{left_id}/capture", "", {}, {"amount": 5_000, "currency": "INR"})
    assert status == 400 and (rzp.counters.auth_releases, rzp.counters.refunds) == (1, 0)
    (row,) = [r for r in rzp.ledger() if r["payment_ref"] == left_id]
    assert (row["authorized_paise"], row["captured_paise"], row["refunded_paise"], row["released"]) == (
        5_000,
        0,
        5_000,
        True,
    )


def test_a_razorpay_merchant_refund_counts_against_what_we_may_refund(rzp: RazorpaySim, clock: Clock) -> None:
    payment_id = _paid_payment(rzp)
    status, refund, _ = rzp.merchant_refund(payment_id, 2_000)
    assert status == 200 and refund["status"] == "pending"
    assert (rzp.payments[payment_id]["amount_refunded"], rzp.payments[payment_id]["refund_status"]) == (
        2_000,
        "partial",
    )
    refused = rzp.handle("POST", f"/v1/payments/{payment_id}/refund", "", {}, {"amount": 3_001})
    assert refused[0] == 400
    assert rzp.merchant_refund(payment_id, 3_001)[0] == 400
    clock.run()
    assert (rzp.counters.merchant_refunds, rzp.counters.refunds) == (1, 0)
