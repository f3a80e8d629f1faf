"""Refunds the gateways report by webhook, in the orders and races a gateway and a merchant produce: a
refund of a payment whose first job gave it back, a refund reported before any job of ours holds the
payment, Razorpay's auto-refund of an authorisation, a refund racing the fulfilment, a refund of ours
after one made in the dashboard. Each ends with the books closed against the gateway's own record."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import psycopg2
import pytest

from local.gateway_sim import Simulator
from local.workers import read_fifo
from shared.bootstrap import App
from shared.domain import GatewayRejected, GatewayRetryable
from shared.services.checkout import get_checkout
from shared.services.intake import accept_payment
from shared.services.reads import queue_status
from shared.settings import Settings
from tests.integration.gateway_helpers import (
    WebhookInbox,
    drain,
    gateway_order,
    jobs,
    ledger_violations,
    open_for,
    order_status,
    pay_at_gateway,
    payment_request,
    pgmq_gateway_settings,
    set_stock_of_order,
)
from tests.integration.helpers import deliver
from tests.integration.test_gateway_books import (
    books,
    books_close,
    follow,
    only_the_rest_went_back,
    pay_unfulfillable,
)


@pytest.fixture
def settings(database_url: str, sim: Simulator, request: pytest.FixtureRequest) -> Settings:
    """Configured for a sale: a fresh Cashfree payment's refunds are not read before fulfilment, so the
    reports alone must keep the books (cashfree_refunds_read_after_s; a test may name its own)."""
    return pgmq_gateway_settings(database_url, sim, cashfree_refunds_read_after_s=getattr(request, "param", 900))


def refunds(app: App) -> list[tuple[Any, ...]]:
    rows = app.db.fetch_all(
        "SELECT origin, attempt, state, amount_paise, after_applied_at IS NOT NULL AS after FROM gateway_refunds"
        " ORDER BY id"
    )
    return [(r["origin"], r["attempt"], r["state"], r["amount_paise"], r["after"]) for r in rows]


def released_then_captured(app: App, sim: Simulator, inbox: WebhookInbox) -> tuple[dict[str, Any], str]:
    """A Razorpay authorisation whose first job failed out_of_stock and gave the payment back; stock came
    back and Razorpay captured it after all, so a second job (queued) now holds it."""
    view = open_for(app, "demo-user-1", "razorpay")
    handed = pay_at_gateway(sim, view)
    accept_payment(app, "demo-user-1", "key-1", payment_request(view, handed))
    set_stock_of_order(app, view["order_id"], 0)
    inbox.deliver()
    drain(app)
    assert [(j["status"], j["reason"]) for j in jobs(app.db)] == [("failed", "out_of_stock")]
    app.db.execute("UPDATE products SET stock = 100")
    payment_id = str(handed["razorpay_payment_id"])
    app.gateways["razorpay"].api.capture(payment_id, view["amount_paise"], "INR")  # type: ignore[attr-defined]
    inbox.deliver()
    return view, payment_id


def sold_out_after_a_dashboard_refund(app: App, sim: Simulator, inbox: WebhookInbox) -> dict[str, Any]:
    """A fresh Cashfree payment of demo-user-1 whose product sold out, ₹50 of it refunded in the dashboard
    before its job ran (the refund's webhook not delivered yet): the checkout's view."""
    view = open_for(app, "demo-user-1", "cashfree")
    pay_at_gateway(sim, view)
    accept_payment(app, "demo-user-1", "key-1", payment_request(view))
    set_stock_of_order(app, view["order_id"], 0)
    inbox.deliver()
    sim.merchant_refund("cashfree", gateway_order(view), 5_000)
    return view


def refund_status(app: App, view: dict[str, Any]) -> dict[str, Any] | None:
    """What the shopper reads of the Cashfree checkout's refund (pq_refund_status)."""
    return app.db.fetch_one("SELECT * FROM pq_refund_status('cashfree', %s)", (gateway_order(view),))


def deliver_for(app: App, seconds: float) -> None:
    """The processor delivering the queue for a while; a job the gateway keeps answering "not yet" is
    still there at the end (its message comes back later)."""
    with contextlib.suppress(AssertionError):
        drain(app, timeout_s=seconds)


def test_a_failed_dashboard_refund_of_a_payment_a_second_job_holds_is_never_taken_over_by_a_refund_of_ours(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given a payment the second job holds, ₹50 of it refunded in the dashboard, a refund Razorpay fails
    view, payment_id = released_then_captured(app, sim, inbox)
    sim.config.razorpay_refund_outcome = "failed"
    sim.merchant_refund("razorpay", payment_id, 5_000)
    inbox.deliver()
    time.sleep(sim.config.refund_settle_s + 0.3)
    inbox.deliver()

    # When the second job runs (the payment is whole again) and the sweeper passes twice
    drain(app)
    follow(app, sim)
    follow(app, sim)

    # Then the order is paid with the whole payment, nothing of ours is refunded, and the books close
    assert order_status(app, view["order_id"]) == "paid"
    assert refunds(app) == [("gateway", 1, "failed", 5_000, False)]
    assert ledger_violations(app, sim) == {}


def test_a_refund_reported_before_any_job_holds_the_payment_stops_its_later_fulfilment(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given a fresh Cashfree payment refunded in full in the dashboard, whose REFUND_STATUS_WEBHOOK comes
    # before the payment's own webhook (Cashfree retries that one at 2, 10 and 30 minutes)
    view = open_for(app, "demo-user-1", "cashfree")
    pay_at_gateway(sim, view)
    sim.merchant_refund("cashfree", gateway_order(view), view["amount_paise"])
    time.sleep(sim.config.refund_settle_s + 0.3)
    sent = inbox.pending()
    refund_hooks = [r for r in sent if b"REFUND_STATUS_WEBHOOK" in r.body]
    assert refund_hooks
    inbox.deliver(refund_hooks)
    assert app.db.fetch_one("SELECT count(*) AS n FROM gateway_refund_reports") == {"n": 1}

    # When the payment's webhook comes at last and its job runs
    inbox.deliver([r for r in sent if r not in refund_hooks])
    drain(app)

    # Then the order is never fulfilled, nothing of ours is sent, and the books close
    assert order_status(app, view["order_id"]) != "paid"
    assert [(j["status"], j["reason"]) for j in jobs(app.db)] == [("failed", "gateway_payment_refunded")]
    assert [r[0] for r in refunds(app)] == ["gateway"]
    assert ledger_violations(app, sim) == {}


def test_razorpays_auto_refund_of_an_authorisation_we_released_is_not_booked_as_a_refund(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given an authorisation we will not capture (its order cancelled), booked released
    sim.config.razorpay_auth_release_s = 1.0
    view = open_for(app, "demo-user-1", "razorpay")
    handed = pay_at_gateway(sim, view)
    accept_payment(app, "demo-user-1", "key-1", payment_request(view, handed))
    app.db.execute("UPDATE orders SET order_status = 'cancelled' WHERE id = %s", (view["order_id"],))
    inbox.deliver()
    drain(app)

    # When Razorpay's capture window passes and it auto-refunds the authorisation (payment.captured false)
    time.sleep(1.0 + sim.config.refund_settle_s + 0.5)
    inbox.deliver()

    # Then no refund is booked against money we never captured, and the books close
    assert refunds(app) == []
    assert ledger_violations(app, sim) == {}


def test_a_refund_report_holding_the_order_keeps_the_racing_fulfilment_from_paying_the_order(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox, database_url: str
) -> None:
    # Given the second job's payment, and a refund webhook in the middle of booking a dashboard refund of it
    # (its transaction open, the order locked)
    view, payment_id = released_then_captured(app, sim, inbox)
    hook = psycopg2.connect(database_url)
    try:
        hook.cursor().execute(
            "SELECT * FROM pq_refund_reported('razorpay', %s, 'rfnd_race1', NULL, 5000, 'INR', 'pending', 'pending')",
            (payment_id,),
        )
        # When the job runs meanwhile, and the webhook commits
        runner = threading.Thread(target=deliver_for, args=(app, 4.0), daemon=True)
        runner.start()
        runner.join(2)
        hook.commit()
    finally:
        hook.close()
    runner.join(10)

    # Then the job saw the refund under the order's lock: the order is not fulfilled with it, the refund is
    # not taken for one made after fulfilment, and the job is still live (it reads the gateway's refunds)
    assert order_status(app, view["order_id"]) != "paid"
    assert refunds(app) == [("gateway", 1, "pending", 5_000, False)]
    assert [j["status"] for j in jobs(app.db)] == ["failed", "processing"]


def test_a_fresh_cashfree_payment_we_cannot_fulfil_returns_only_what_a_dashboard_refund_left(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given a fresh Cashfree payment whose product sold out, ₹50 of it refunded in the dashboard before the
    # job ran (its webhook not delivered yet)
    view = sold_out_after_a_dashboard_refund(app, sim, inbox)

    # When the job runs, the dashboard refund's webhook comes and the sweeper follows the refunds
    drain(app)
    time.sleep(sim.config.refund_settle_s + 0.3)
    inbox.deliver()
    follow(app, sim)

    # Then ours, sent without a read first, asked for all ₹150 and was refused; the refusal read the refunds,
    # withdrew ours (failed, never owed nor retried: nothing was created at Cashfree) and sent the ₹100 left
    # under the next attempt's reference; the shopper sees it refunded and the books close
    ours = app.db.fetch_all(
        "SELECT attempt, state, amount_paise, withdrawn_at IS NOT NULL AS withdrawn, owed_at, retry_at, refund_ref"
        " FROM gateway_refunds WHERE origin = 'ours' ORDER BY attempt"
    )
    assert [(r["attempt"], r["state"], r["amount_paise"], r["withdrawn"]) for r in ours] == [
        (1, "failed", view["amount_paise"], True),
        (2, "succeeded", view["amount_paise"] - 5_000, False),
    ]
    assert all(r["owed_at"] is None and r["retry_at"] is None for r in ours)
    assert ours[1]["refund_ref"] == ours[0]["refund_ref"] + "_2"
    status = refund_status(app, view)
    assert status == {"status": "refunded", "amount_paise": view["amount_paise"]}
    assert ledger_violations(app, sim) == {}


@pytest.mark.parametrize("settings", [0], indirect=True)  # every payment's refunds read before fulfilment
def test_a_cashfree_payment_we_cannot_fulfil_is_refunded_without_reading_its_refunds(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given a Cashfree payment whose product sold out, under settings that read refunds before any fulfilment
    view = open_for(app, "demo-user-1", "cashfree")
    pay_at_gateway(sim, view)
    accept_payment(app, "demo-user-1", "key-1", payment_request(view))
    set_stock_of_order(app, view["order_id"], 0)
    inbox.deliver()

    # When the job runs
    drain(app)

    # Then all of it goes back at once, and no Get Refund token was spent on reading refunds first (a sale's
    # refunds are paced by Create Refund, not by Get Refund's 30 a minute)
    assert [r[:4] for r in refunds(app)] == [("ours", 1, "pending", view["amount_paise"])]
    assert not [k for k in sim.stats("cashfree")["by_endpoint"] if "refunds" in k and k.startswith("GET")]


def test_a_fresh_cashfree_payment_is_fulfilled_without_reading_refunds_and_a_later_dashboard_refund_is_reported(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given a Cashfree order paid a moment ago (its refunds are not read: cashfree_refunds_read_after_s)
    view = open_for(app, "demo-user-1", "cashfree")
    pay_at_gateway(sim, view)
    accept_payment(app, "demo-user-1", "key-1", payment_request(view))
    drain(app)
    assert [(j["status"], j["reason"]) for j in jobs(app.db)] == [("succeeded", None)]
    assert not [k for k in sim.stats("cashfree")["by_endpoint"] if "refunds" in k]

    # When the merchant refunds ₹50 of it in Cashfree's dashboard and Cashfree reports it processed
    sim.merchant_refund("cashfree", gateway_order(view), 5_000)
    time.sleep(sim.config.refund_settle_s + 0.2)
    assert inbox.deliver()

    # Then the order stays paid, the refund is booked out of what was applied, the operator sees it
    # (with the metric the webhook raised), and the books close against Cashfree's own record
    assert app.db.fetch_one("SELECT order_status FROM orders WHERE id = %s", (view["order_id"],)) == {
        "order_status": "paid"
    }
    assert [(r[0], r[2], r[3]) for r in refunds(app)] == [("gateway", "succeeded", 5_000)]
    assert [(b["captured_paise"], b["applied_paise"], b["refunded_paise"]) for b in books(app)] == [
        (view["amount_paise"], view["amount_paise"] - 5_000, 5_000)
    ]
    shown = queue_status(app)["refunds"]
    assert (shown["after_fulfilment"], shown["after_fulfilment_paise"]) == (1, 5_000)
    assert [r["order_id"] for r in shown["refunds_after_fulfilment"]] == [view["order_id"]]
    assert get_checkout(app, "demo-user-1", view["checkout_id"])["status"] == "paid"
    books_close(app, sim)


def test_a_dashboard_refund_reported_by_webhook_before_the_job_runs_stops_the_fulfilment(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given a Cashfree order paid a moment ago, ₹50 of it refunded in the dashboard and reported processed
    # by Cashfree's webhook before the shopper's job runs
    view = open_for(app, "demo-user-1", "cashfree")
    pay_at_gateway(sim, view)
    total = view["amount_paise"]
    sim.merchant_refund("cashfree", gateway_order(view), 5_000)
    time.sleep(sim.config.refund_settle_s + 0.2)
    accept_payment(app, "demo-user-1", "key-1", payment_request(view))
    inbox.deliver()
    assert [(r[0], r[2]) for r in refunds(app)] == [("gateway", "succeeded")]

    # When the job runs, although the payment is too fresh for it to read the refunds first
    drain(app)
    follow(app, sim)

    # Then the order is never fulfilled and exactly what was left goes back
    only_the_rest_went_back(app, total)
    books_close(app, sim)


def test_a_live_jobs_refund_the_sweeper_finds_refused_after_a_dashboard_refund_is_withdrawn_and_the_rest_sent_once(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given a fresh Cashfree payment whose product sold out, ₹50 of it refunded in the dashboard before the
    # job ran, and Cashfree unavailable when the job sends its refund (the message comes back later)
    view = sold_out_after_a_dashboard_refund(app, sim, inbox)
    cashfree = app.gateways["cashfree"]
    real_refund = cashfree.refund
    sends: list[str] = []

    def unavailable_once(ref: str, amount_paise: int, currency: str, refund_ref: str) -> Any:
        sends.append(refund_ref)
        if len(sends) == 1:
            raise GatewayRetryable("unavailable", "Cashfree answered 503")
        if len(sends) > 6:  # the job asking again and again for what was refused: stop the loop
            raise RecursionError("the same refund sent again and again")
        return real_refund(ref, amount_paise, currency, refund_ref)

    cashfree.refund = unavailable_once  # type: ignore[method-assign]
    deliver(app, read_fifo(app.db, "payments", visibility_timeout_s=30, qty=10))

    # When the sweeper sends the job's requested refund first (Cashfree refuses all ₹150, and the refunds it
    # reads then say why: it withdraws it and sends the rest), and then the job's message comes back
    follow(app, sim)
    assert app.db.fetch_all(
        "SELECT attempt, withdrawn_at IS NOT NULL AS withdrawn, owed_at IS NOT NULL AS owed FROM gateway_refunds"
        " WHERE origin = 'ours' ORDER BY attempt"
    ) == [{"attempt": 1, "withdrawn": True, "owed": False}, {"attempt": 2, "withdrawn": False, "owed": False}]
    app.db.execute("UPDATE gateway_rate_limits SET tokens = 10 WHERE gateway LIKE 'cashfree.%'")
    drain(app)
    time.sleep(sim.config.refund_settle_s + 0.3)
    inbox.deliver()
    follow(app, sim)

    # Then the refused refund stays withdrawn (never owed: nothing was created at Cashfree) and the ₹100 left
    # went back under the next reference, once: the job's delivery found it sent; the shopper reads refunded
    # and the books close
    ours = app.db.fetch_all(
        "SELECT attempt, state, amount_paise, withdrawn_at IS NOT NULL AS withdrawn, owed_at IS NOT NULL AS owed"
        " FROM gateway_refunds WHERE origin = 'ours' ORDER BY attempt"
    )
    assert [tuple(r.values()) for r in ours] == [
        (1, "failed", view["amount_paise"], True, False),
        (2, "succeeded", view["amount_paise"] - 5_000, False, False),
    ]
    assert len(sends) == 3  # the job's unanswered send, the sweeper's (refused), the sweeper's rest: never resent
    # the job ends for its own reason: its refund (the rest) was the sweeper's to explain, not the job's
    assert [(j["status"], j["reason"]) for j in jobs(app.db)] == [("failed", "out_of_stock")]
    status = refund_status(app, view)
    assert status == {"status": "refunded", "amount_paise": view["amount_paise"]}
    assert ledger_violations(app, sim) == {}


def test_a_refused_refund_whose_refunds_could_not_be_read_at_once_is_not_sent_again_by_the_next_delivery(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given a fresh Cashfree payment whose product sold out, ₹50 of it refunded in the dashboard before the
    # job ran, and no Get Refund token left when Cashfree refuses ours (the sweeper spent the minute's)
    view = sold_out_after_a_dashboard_refund(app, sim, inbox)
    cashfree = app.gateways["cashfree"]
    real_refund = cashfree.refund
    sends: list[int] = []

    def refused_with_get_refund_spent(ref: str, amount_paise: int, currency: str, refund_ref: str) -> Any:
        sends.append(amount_paise)
        if len(sends) > 6:  # the same refused refund sent by every delivery: stop the test's loop
            raise RecursionError("the refused refund sent again and again")
        try:
            return real_refund(ref, amount_paise, currency, refund_ref)
        except GatewayRejected:
            if len(sends) == 1:
                app.db.execute(
                    """INSERT INTO gateway_rate_limits (gateway, tokens, updated_at)
                       VALUES ('cashfree.get_refund', 0, clock_timestamp())
                       ON CONFLICT (gateway) DO UPDATE SET tokens = 0, updated_at = clock_timestamp()"""
                )
            raise

    cashfree.refund = refused_with_get_refund_spent  # type: ignore[method-assign]

    # When the job runs, reading the refunds only once a reserved token comes
    drain(app)
    time.sleep(sim.config.refund_settle_s + 0.3)
    inbox.deliver()
    follow(app, sim)

    # Then the refused refund was sent once: the next delivery read the refunds before sending anything,
    # withdrew it and returned the ₹100 left; the books close
    assert sends == [view["amount_paise"], view["amount_paise"] - 5_000]
    ours = app.db.fetch_all(
        "SELECT attempt, state, amount_paise, withdrawn_at IS NOT NULL AS withdrawn FROM gateway_refunds"
        " WHERE origin = 'ours' ORDER BY attempt"
    )
    assert [tuple(r.values()) for r in ours] == [
        (1, "failed", view["amount_paise"], True),
        (2, "succeeded", view["amount_paise"] - 5_000, False),
    ]
    assert [(j["status"], j["reason"]) for j in jobs(app.db)] == [("failed", "gateway_payment_refunded")]
    assert ledger_violations(app, sim) == {}


def test_a_withdrawn_refund_is_not_counted_among_the_attempts_the_rest_is_sent_in(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given a fresh Cashfree payment whose product sold out, ₹50 of it refunded in the dashboard before the
    # job ran, and Cashfree cancelling the next two refunds of ours
    view = sold_out_after_a_dashboard_refund(app, sim, inbox)
    sim.config.cashfree_refund_outcomes = ["CANCELLED", "CANCELLED"]

    # When the job runs (ours for all ₹150 is refused and withdrawn; the ₹100 left is sent), Cashfree cancels
    # that, the sweeper sends it again, and Cashfree cancels that too
    drain(app)
    follow(app, sim)
    assert follow(app, sim)["refunds_retried"] == 1
    app.db.execute("UPDATE gateway_rate_limits SET tokens = 10 WHERE gateway LIKE 'cashfree.%'")  # the pass reads
    follow(app, sim)

    # Then two of the policy's three attempts were spent on the rest (the withdrawn one never reached
    # Cashfree's books): a third is scheduled, nothing is owed, and the shopper reads refunding
    ours = app.db.fetch_all(
        "SELECT attempt, state, withdrawn_at IS NOT NULL AS withdrawn, retry_at IS NOT NULL AS scheduled,"
        " owed_at IS NOT NULL AS owed FROM gateway_refunds WHERE origin = 'ours' ORDER BY attempt"
    )
    assert [tuple(r.values()) for r in ours] == [
        (1, "failed", True, False, False),
        (2, "failed", False, False, False),
        (3, "failed", False, True, False),
    ]
    status = refund_status(app, view)
    assert status is not None and status["status"] == "refunding"


def bank_failed_our_refund_and_the_merchant_refunded_in_the_dashboard(
    app: App, sim: Simulator, inbox: WebhookInbox, method: str, failed: str, dashboard_paise: int | None
) -> tuple[int, str]:
    """A paid order cancelled meanwhile: our refund of all of it (attempt 1) fails at the bank, the sweeper
    schedules attempt 2 of all of it, and before that is due the merchant refunds dashboard_paise in the
    gateway's dashboard (None: all of it; its webhook booked). Returns the payment's amount and reference."""
    sim.config.razorpay_auto_capture = True
    setattr(sim.config, f"{method}_refund_outcomes", [failed])
    view = pay_unfulfillable(app, sim, method)
    drain(app)
    inbox.deliver()
    follow(app, sim)
    scheduled = app.db.fetch_all(
        "SELECT attempt, state, retry_at IS NOT NULL AS scheduled FROM gateway_refunds WHERE origin = 'ours'"
    )
    assert [tuple(r.values()) for r in scheduled] == [(1, "failed", True)]
    payment = app.db.fetch_one("SELECT gateway_ref FROM gateway_payments")
    assert payment is not None
    dashboard_paise = view["amount_paise"] if dashboard_paise is None else dashboard_paise
    sim.merchant_refund(method, payment["gateway_ref"], dashboard_paise)
    time.sleep(sim.config.refund_settle_s + 0.3)
    inbox.deliver()
    assert [(r[0], r[3]) for r in refunds(app) if r[0] == "gateway"] == [("gateway", dashboard_paise)]
    return int(view["amount_paise"]), str(payment["gateway_ref"])


@pytest.mark.parametrize(("method", "failed"), [("cashfree", "CANCELLED"), ("razorpay", "failed")])
def test_a_retry_the_gateway_refuses_after_a_dashboard_refund_returns_only_the_rest_and_nothing_is_owed(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox, method: str, failed: str
) -> None:
    # Given our refund of a cancelled order failed at the bank, its retry of all of it due, and ₹50 of the
    # payment refunded in the dashboard meanwhile
    total, ref = bank_failed_our_refund_and_the_merchant_refunded_in_the_dashboard(
        app, sim, inbox, method, failed, 5_000
    )

    # When the sweeper sends the retry (refused: it asks for more than is left) and its passes follow
    follow(app, sim)
    follow(app, sim)
    inbox.deliver()

    # Then the refused retry is withdrawn (never owed: nothing was created at the gateway) and the ₹100 left
    # went back under the next reference; the shopper reads refunded, no alarm is owed, the books close
    ours = app.db.fetch_all(
        "SELECT attempt, state, amount_paise, withdrawn_at IS NOT NULL AS withdrawn, owed_at IS NOT NULL AS owed,"
        " retry_at IS NOT NULL AS scheduled, refund_ref FROM gateway_refunds WHERE origin = 'ours' ORDER BY attempt"
    )
    assert [tuple(r.values())[:6] for r in ours] == [
        (1, "failed", total, False, False, False),
        (2, "failed", total, True, False, False),
        (3, "succeeded", total - 5_000, False, False, False),
    ]
    assert ours[2]["refund_ref"] == ours[0]["refund_ref"] + "_3"
    status = app.db.fetch_one("SELECT * FROM pq_refund_status(%s, %s)", (method, ref))
    assert status == {"status": "refunded", "amount_paise": total}
    assert queue_status(app)["refunds"]["owed"] == 0
    assert ledger_violations(app, sim) == {}


def test_a_retry_refused_after_the_dashboard_refunded_all_of_it_is_withdrawn_with_nothing_more_sent(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given our refund of a cancelled order failed at the bank, its retry due, and all of the payment
    # refunded in Cashfree's dashboard meanwhile
    total, ref = bank_failed_our_refund_and_the_merchant_refunded_in_the_dashboard(
        app, sim, inbox, "cashfree", "CANCELLED", None
    )

    # When the sweeper sends the retry (refused: nothing is left) and its next pass follows
    follow(app, sim)
    follow(app, sim)

    # Then the refused retry is withdrawn and nothing more is asked for: the dashboard refund returned it
    # all, the shopper reads refunded, nothing is owed or refunding, and the books close
    ours = app.db.fetch_all(
        "SELECT attempt, state, withdrawn_at IS NOT NULL AS withdrawn, owed_at IS NOT NULL AS owed,"
        " retry_at IS NOT NULL AS scheduled FROM gateway_refunds WHERE origin = 'ours' ORDER BY attempt"
    )
    assert [tuple(r.values()) for r in ours] == [(1, "failed", False, False, False), (2, "failed", True, False, False)]
    status = app.db.fetch_one("SELECT * FROM pq_refund_status('cashfree', %s)", (ref,))
    assert status == {"status": "refunded", "amount_paise": total}
    assert [(b["refunded_paise"], b["refunding_paise"], b["owed_paise"]) for b in books(app)] == [(total, 0, 0)]
    assert ledger_violations(app, sim) == {}


def test_a_retry_refused_with_no_token_to_read_the_refunds_stays_requested_and_a_later_pass_explains_it(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given our refund of a cancelled order failed at Cashfree's bank, its retry due, ₹50 refunded in the
    # dashboard meanwhile, and no Get Refund token left once Cashfree refuses the retry
    total, ref = bank_failed_our_refund_and_the_merchant_refunded_in_the_dashboard(
        app, sim, inbox, "cashfree", "CANCELLED", 5_000
    )
    cashfree = app.gateways["cashfree"]
    real_refund = cashfree.refund
    refusals: list[str] = []

    def refused_with_get_refund_spent(ref: str, amount_paise: int, currency: str, refund_ref: str) -> Any:
        try:
            return real_refund(ref, amount_paise, currency, refund_ref)
        except GatewayRejected:
            refusals.append(refund_ref)
            if len(refusals) > 1:  # a later pass: its tokens are there
                raise
            app.db.execute(
                """INSERT INTO gateway_rate_limits (gateway, tokens, updated_at)
                   VALUES ('cashfree.get_refund', 0, clock_timestamp())
                   ON CONFLICT (gateway) DO UPDATE SET tokens = 0, updated_at = clock_timestamp()"""
            )
            raise

    cashfree.refund = refused_with_get_refund_spent  # type: ignore[method-assign]

    # When the sweeper's pass sends the retry and stops short of reading why it was refused
    follow(app, sim)

    # Then the retry stays requested, neither owed nor withdrawn, for a later pass
    retry = app.db.fetch_one(
        "SELECT state, owed_at IS NOT NULL AS owed, withdrawn_at IS NOT NULL AS withdrawn FROM gateway_refunds"
        " WHERE origin = 'ours' AND attempt = 2"
    )
    assert retry == {"state": "requested", "owed": False, "withdrawn": False}

    # When a later pass has tokens: it finds the gateway without the retry, sends it again, reads the refunds
    app.db.execute("UPDATE gateway_rate_limits SET tokens = 10 WHERE gateway LIKE 'cashfree.%'")
    follow(app, sim)
    follow(app, sim)

    # Then it is withdrawn, the ₹100 left went back, nothing is owed and the books close
    assert len(refusals) == 2
    ours = app.db.fetch_all(
        "SELECT attempt, state, amount_paise, withdrawn_at IS NOT NULL AS withdrawn, owed_at IS NOT NULL AS owed"
        " FROM gateway_refunds WHERE origin = 'ours' ORDER BY attempt"
    )
    assert [tuple(r.values()) for r in ours] == [
        (1, "failed", total, False, False),
        (2, "failed", total, True, False),
        (3, "succeeded", total - 5_000, False, False),
    ]
    status = app.db.fetch_one("SELECT * FROM pq_refund_status('cashfree', %s)", (ref,))
    assert status == {"status": "refunded", "amount_paise": total}
    assert ledger_violations(app, sim) == {}
