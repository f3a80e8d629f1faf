"""A review of the gateway payment's phases (merge 4af781c): a cheating shopper and Murphy against the money
path -- crashes between steps, concurrent deliveries, dashboard refunds at the gateway, an order that sells
out or comes back during a delivery, an authorisation for another amount than the checkout. Each test says
which invariant it holds: no paisa captured without being applied, refunded or owed; no double capture or
refund; no refund above what is left; no network call inside a transaction."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg2.extensions
import pytest

from local.gateway_sim import Simulator
from shared.bootstrap import App
from shared.domain import GatewayRejected, RetryLater
from shared.gateways.http import Http
from shared.services.checkout import get_checkout
from shared.services.gateway import process_gateway_job
from shared.services.intake import accept_payment
from shared.settings import Settings
from tests.integration.gateway_helpers import (
    WebhookInbox,
    cancelled_and_lost_at_its_refund,
    gateway_order,
    jobs,
    ledger_violations,
    open_for,
    order_status,
    paid_job,
    paid_long_ago,
    pay_at_gateway,
    payment_request,
    pgmq_gateway_settings,
    set_stock_of_order,
)
from tests.integration.test_refund_reports import refunds


@pytest.fixture
def settings(database_url: str, sim: Simulator) -> Settings:
    # A Cashfree payment completed longer ago than this has its refunds read before it is fulfilled.
    return pgmq_gateway_settings(database_url, sim, cashfree_refunds_read_after_s=900)


@pytest.fixture
def no_request_in_a_transaction(app: App, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every gateway request checks that the App's connection on its thread holds no open transaction."""
    held: list[str] = []
    real = Http.request

    def guarded(self: Http, method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
        conn = app.db._connection()  # the thread's own, as the App uses it
        if conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            held.append(f"{method} {path}")
        return real(self, method, path, headers, body)

    monkeypatch.setattr(Http, "request", guarded)
    yield held


def violations(app: App, sim: Simulator) -> dict[str, int]:
    """The invariants against the gateway's record, but for the events these direct deliveries (no
    processor batch, so no outbox dispatch) leave unsent."""
    return {k: v for k, v in ledger_violations(app, sim).items() if k != "missing_notifications"}


def deliver_once(app: App, job_id: str, method: str, n: int) -> Any:
    return process_gateway_job(app, job_id, method, receipt_handle=f"payments:0:{n}", receive_count=n)


def ours(app: App) -> list[tuple[Any, ...]]:
    rows = app.db.fetch_all(
        """SELECT attempt, state, amount_paise, withdrawn_at IS NOT NULL AS withdrawn, owed_at IS NOT NULL AS owed
             FROM gateway_refunds WHERE origin = 'ours' ORDER BY attempt"""
    )
    return [(r["attempt"], r["state"], r["amount_paise"], r["withdrawn"], r["owed"]) for r in rows]


def test_an_old_cashfree_payment_whose_order_comes_back_in_stock_is_not_fulfilled_without_reading_its_refunds(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given a Cashfree payment completed an hour ago (its refunds are read before fulfilment), Rs 50 of it
    # refunded in the dashboard (its webhook lost), and its order sold out when the delivery BEGINs
    view = open_for(app, "demo-user-1", "cashfree")
    pay_at_gateway(sim, view)
    paid_long_ago(sim, view)
    sim.merchant_refund("cashfree", gateway_order(view), 5_000)
    time.sleep(sim.config.refund_settle_s + 0.3)
    job_id = accept_payment(app, "demo-user-1", "key-1", payment_request(view)).body["job_id"]
    set_stock_of_order(app, view["order_id"], 0)
    # ... and back in stock while the VERDICT reads the payment (BEGIN's early answer was "out_of_stock")
    api = app.gateways["cashfree"].api  # type: ignore[attr-defined]
    real_payments = api.order_payments

    def restocked_meanwhile(order_id: str) -> Any:
        set_stock_of_order(app, view["order_id"], 1000)
        return real_payments(order_id)

    api.order_payments = restocked_meanwhile

    # When the job runs
    deliver_once(app, job_id, "cashfree", 1)

    # Then the order is not fulfilled with money the merchant already gave back: the payment's refunds are
    # read before any fulfilment of an old payment, whatever BEGIN's early answer was
    assert order_status(app, view["order_id"]) != "paid"
    assert violations(app, sim) == {}


def test_a_refund_report_kept_before_the_job_that_failed_since_does_not_hold_the_payment_forever(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given a Razorpay payment (auto-captured) refunded in part in the dashboard before any job of ours held
    # it: its refund.created webhook kept as a report for the job to come
    sim.config.razorpay_auto_capture = True
    sim.config.razorpay_refund_outcome = "failed"
    sim.config.refund_settle_s = 1.0
    view = open_for(app, "demo-user-1", "razorpay")
    handed = pay_at_gateway(sim, view)
    inbox.pending()  # the payment's own webhooks: not delivered
    sim.merchant_refund("razorpay", handed["razorpay_payment_id"], 5_000)
    inbox.deliver()
    assert app.db.fetch_one("SELECT count(*) AS n FROM gateway_refund_reports") == {"n": 1}
    # ... then the shopper's job, and the bank failing that refund (refund.failed: the payment whole again)
    job_id = accept_payment(app, "demo-user-1", "key-1", payment_request(view, handed)).body["job_id"]
    time.sleep(sim.config.refund_settle_s + 0.5)
    inbox.deliver()
    assert [r[:3] for r in refunds(app)] == [("gateway", 1, "failed")]

    # When the job is delivered, and delivered again
    outcomes = []
    for n in (1, 2, 3):
        try:
            outcomes.append(deliver_once(app, job_id, "razorpay", n).outcome)
            break
        except RetryLater:
            outcomes.append("retry_later")

    # Then the whole payment, no refund of it standing, pays its order; it is not handed back until the DLQ
    assert outcomes[-1] == "succeeded", outcomes
    assert order_status(app, view["order_id"]) == "paid"


def test_a_razorpay_authorisation_for_less_than_the_checkout_is_released_never_captured(
    app: App, sim: Simulator, demo: dict[str, int], no_request_in_a_transaction: list[str]
) -> None:
    # Given a cheating shopper whose authorisation, on the checkout's own Razorpay order, is for Rs 1 less
    view = open_for(app, "demo-user-1", "razorpay")
    handed = pay_at_gateway(sim, view)
    sim.razorpay.payments[handed["razorpay_payment_id"]]["amount"] = view["amount_paise"] - 100
    job_id = accept_payment(app, "demo-user-1", "key-1", payment_request(view, handed)).body["job_id"]

    # When the job runs
    outcome = deliver_once(app, job_id, "razorpay", 1)

    # Then nothing is captured or refunded, the authorisation is booked released, the order stays unpaid
    assert (outcome.outcome, outcome.reason) == ("failed", "amount_mismatch")
    assert (sim.stats()["captures"], sim.stats()["refunds"]) == (0, 0)
    assert order_status(app, view["order_id"]) == "pending"
    assert violations(app, sim) == {}
    assert no_request_in_a_transaction == []


def test_a_razorpay_authorisation_of_a_checkout_whose_order_total_changed_is_released_never_captured(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given an authorisation for the checkout's amount, and the order's total changed since the checkout
    view = open_for(app, "demo-user-1", "razorpay")
    handed = pay_at_gateway(sim, view)
    job_id = accept_payment(app, "demo-user-1", "key-1", payment_request(view, handed)).body["job_id"]
    app.db.execute("UPDATE orders SET total_paise = total_paise + 100 WHERE id = %s", (view["order_id"],))

    # When the job runs
    outcome = deliver_once(app, job_id, "razorpay", 1)

    # Then BEGIN's early answer (the checkout's amount against the order) stops the capture
    assert (outcome.outcome, outcome.reason) == ("failed", "amount_mismatch")
    assert (sim.stats()["captures"], sim.stats()["refunds"]) == (0, 0)
    assert violations(app, sim) == {}


def test_a_razorpay_payment_sold_out_and_partly_refunded_in_the_dashboard_during_capture_returns_only_the_rest(
    app: App, sim: Simulator, demo: dict[str, int], no_request_in_a_transaction: list[str]
) -> None:
    # Given an authorisation whose order sells out, and the merchant refunds Rs 50 of it in the dashboard,
    # while the capture is at Razorpay
    view = open_for(app, "demo-user-1", "razorpay")
    handed = pay_at_gateway(sim, view)
    pay_id = handed["razorpay_payment_id"]
    job_id = accept_payment(app, "demo-user-1", "key-1", payment_request(view, handed)).body["job_id"]
    api = app.gateways["razorpay"].api  # type: ignore[attr-defined]
    real_capture = api.capture

    def meanwhile(ref: str, amount_paise: int, currency: str) -> Any:
        captured = real_capture(ref, amount_paise, currency)
        sim.merchant_refund("razorpay", pay_id, 5_000)
        set_stock_of_order(app, view["order_id"], 0)
        return captured

    api.capture = meanwhile

    # When the job runs
    outcome = deliver_once(app, job_id, "razorpay", 1)

    # Then COMPLETE's full refund is refused, withdrawn, and only what the dashboard left goes back; nothing
    # owed, nothing above what is left, one capture; the books close against Razorpay's
    assert (outcome.outcome, outcome.reason) == ("failed", "gateway_payment_refunded")
    assert ours(app) == [
        (1, "failed", view["amount_paise"], True, False),
        (2, "pending", view["amount_paise"] - 5_000, False, False),
    ]
    assert sim.stats()["captures"] == 1
    assert sim.razorpay.payments[pay_id]["amount_refunded"] == view["amount_paise"]
    assert violations(app, sim) == {}
    assert no_request_in_a_transaction == []


def test_a_delivery_lost_between_completes_booking_and_the_send_then_a_dashboard_refund_returns_only_the_rest(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given a paid Cashfree checkout whose order was cancelled, and a delivery that dies after COMPLETE booked
    # the refund, before it left
    view, job_id = cancelled_and_lost_at_its_refund(app, sim, sent=False)
    # ... and the merchant refunds Rs 50 in the dashboard before the message comes back
    sim.merchant_refund("cashfree", gateway_order(view), 5_000)

    # When it comes back
    outcome = deliver_once(app, job_id, "cashfree", 2)

    # Then the booked refund, read first, is withdrawn unsent and only the rest goes back, once
    assert outcome.outcome == "failed"
    assert ours(app) == [
        (1, "failed", view["amount_paise"], True, False),
        (2, "pending", view["amount_paise"] - 5_000, False, False),
    ]
    assert sim.stats()["refunds"] == 1
    time.sleep(sim.config.refund_settle_s + 0.3)
    checkout = get_checkout(app, "demo-user-1", view["checkout_id"])
    assert checkout["status"] in ("refunding", "refunded")
    assert violations(app, sim) == {}


def test_two_deliveries_racing_to_capture_capture_once_and_fulfil_once(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given one Razorpay job delivered twice at once (a visibility timeout lapsed under a slow delivery),
    # both reaching CAPTURE together
    view = open_for(app, "demo-user-1", "razorpay")
    handed = pay_at_gateway(sim, view)
    job_id = accept_payment(app, "demo-user-1", "key-1", payment_request(view, handed)).body["job_id"]
    api = app.gateways["razorpay"].api  # type: ignore[attr-defined]
    real_capture = api.capture
    together = threading.Barrier(2, timeout=10)

    def capture(ref: str, amount_paise: int, currency: str) -> Any:
        together.wait()
        return real_capture(ref, amount_paise, currency)

    api.capture = capture
    results: list[Any] = []

    def run(n: int) -> None:
        try:
            results.append(deliver_once(app, job_id, "razorpay", n).outcome)
        except (GatewayRejected, RetryLater) as exc:
            results.append(type(exc).__name__)

    threads = [threading.Thread(target=run, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Then one capture, the other refused by Razorpay (handed back to the queue); the order paid once; a
    # third delivery changes nothing
    assert sorted(map(str, results)) == ["RetryLater", "succeeded"]
    assert (sim.stats()["captures"], sim.stats()["refunds"]) == (1, 0)
    assert deliver_once(app, job_id, "razorpay", 3).outcome == "already_succeeded"
    assert app.db.fetch_one("SELECT count(*) AS n FROM payment_transactions") == {"n": 1}
    assert [j["status"] for j in jobs(app.db)] == ["succeeded"]
    assert violations(app, sim) == {}


def test_a_capture_whose_answer_is_lost_and_whose_order_sells_out_before_the_redelivery_is_refunded_once(
    app: App, sim: Simulator, demo: dict[str, int], no_request_in_a_transaction: list[str]
) -> None:
    # Given a Razorpay capture that Razorpay applies but answers 502, and the order selling out before the
    # message comes back
    view = open_for(app, "demo-user-1", "razorpay")
    handed = pay_at_gateway(sim, view)
    job_id = accept_payment(app, "demo-user-1", "key-1", payment_request(view, handed)).body["job_id"]
    sim.config.fail_after_send = 1
    with pytest.raises(RetryLater):
        deliver_once(app, job_id, "razorpay", 1)
    set_stock_of_order(app, view["order_id"], 0)

    # When it comes back
    outcome = deliver_once(app, job_id, "razorpay", 2)

    # Then the VERDICT reads the payment captured, COMPLETE refunds all of it once, nothing is sold
    assert (outcome.outcome, outcome.reason) == ("failed", "out_of_stock")
    assert (sim.stats()["captures"], sim.stats()["double_captures"], sim.stats()["refunds"]) == (1, 0, 1)
    assert ours(app) == [(1, "pending", view["amount_paise"], False, False)]
    assert app.db.fetch_one("SELECT count(*) AS n FROM payment_transactions") == {"n": 0}
    assert violations(app, sim) == {}
    assert no_request_in_a_transaction == []


def test_a_cashfree_payment_of_a_checkout_whose_order_total_changed_is_refunded_whole_and_never_applied(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given a paid Cashfree checkout whose order's total changed after the checkout was opened
    view, job_id = paid_job(app, sim, "cashfree")
    app.db.execute("UPDATE orders SET total_paise = total_paise - 100 WHERE id = %s", (view["order_id"],))

    # When the job runs
    outcome = deliver_once(app, job_id, "cashfree", 1)

    # Then the order is not paid with another amount than its total: the payment goes back whole
    assert (outcome.outcome, outcome.reason) == ("failed", "amount_mismatch")
    assert ours(app) == [(1, "pending", view["amount_paise"], False, False)]
    assert app.db.fetch_one("SELECT count(*) AS n FROM payment_transactions") == {"n": 0}
    assert violations(app, sim) == {}


def test_a_refund_the_gateway_refuses_outright_is_owed_and_the_shopper_is_never_told_refunded(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given a paid Cashfree checkout whose order was cancelled, and Cashfree refusing our refund outright
    # (a 4xx no refund at the gateway explains)
    view, job_id = paid_job(app, sim, "cashfree")
    app.db.execute("UPDATE orders SET order_status = 'cancelled' WHERE id = %s", (view["order_id"],))
    cashfree = app.gateways["cashfree"]

    def refuses(ref: str, amount_paise: int, currency: str, refund_ref: str) -> Any:
        raise GatewayRejected(400, "refund_not_allowed")

    cashfree.refund = refuses  # type: ignore[method-assign]

    # When the job runs
    outcome = deliver_once(app, job_id, "cashfree", 1)

    # Then the refund is owed in front of an operator, and the shopper's checkout says it failed
    assert outcome.outcome == "failed"
    assert ours(app) == [(1, "failed", view["amount_paise"], False, True)]
    assert get_checkout(app, "demo-user-1", view["checkout_id"])["status"] == "refund_failed"
    assert violations(app, sim) == {}
