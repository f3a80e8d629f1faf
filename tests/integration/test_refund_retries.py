"""Refunds of ours that take over failed ones (a dashboard refund the gateway cancelled, a refund of ours that
failed), retried by the sweeper's reconciliation against the gateway simulator and a real PostgreSQL."""

from __future__ import annotations

import time

import pytest

from local.gateway_sim import Simulator
from shared.bootstrap import App
from shared.services.intake import accept_payment
from shared.services.reconcile import reconcile
from shared.settings import Settings
from tests.integration.gateway_helpers import (
    drain,
    gateway_order,
    jobs,
    open_for,
    paid_long_ago,
    pay_at_gateway,
    payment_request,
    pgmq_gateway_settings,
)
from tests.integration.test_gateway_books import books_close


@pytest.fixture
def settings(database_url: str, sim: Simulator) -> Settings:
    # Tokens for every read and refund: no pass here stops for the limiter.
    return pgmq_gateway_settings(
        database_url, sim, gateway_limits_per_min={"cashfree.get_refund": 60_000, "cashfree.create_refund": 60_000}
    )


def _sweeps(app: App, sim: Simulator, n: int) -> list[str]:
    """n reconciliation passes with everything due; the errors they raised."""
    errors: list[str] = []
    for _ in range(n):
        time.sleep(sim.config.refund_settle_s + 0.2)
        app.db.execute("UPDATE gateway_refunds SET next_check_at = now() WHERE state IN ('requested', 'pending')")
        app.db.execute("UPDATE gateway_refunds SET retry_at = now() WHERE retry_at IS NOT NULL")
        try:
            reconcile(app)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    return errors


def test_two_failed_refunds_of_one_payment_due_together_are_each_taken_over_and_stop_no_other_refund(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given a paid Cashfree order the merchant refunded in two parts in the dashboard before our job ran, two
    # refunds Cashfree then cancels (the bank refuses the shopper's account); refunds of ours go through.
    # Found by a review: both were given the job's one next attempt and reference, and the unique reference
    # failed that statement, and with it every later pass's retries and follow-ups, for every payment
    sim.config.cashfree_refund_outcome = "CANCELLED"
    sim.config.cashfree_refund_outcomes = ["SUCCESS"] * 4
    view = open_for(app, "demo-user-1", "cashfree")
    pay_at_gateway(sim, view)
    paid_long_ago(sim, view)
    sim.merchant_refund("cashfree", gateway_order(view), 3_000)
    sim.merchant_refund("cashfree", gateway_order(view), 2_000)
    accept_payment(app, "demo-user-1", "key-1", payment_request(view))
    drain(app)
    assert [(j["status"], j["reason"]) for j in jobs(app.db)] == [("failed", "gateway_payment_refunded")]

    # When the sweeper follows both dashboard refunds to CANCELLED (both to be taken over by refunds of ours),
    # while another shopper's refund of ours waits at Cashfree to be followed
    assert _sweeps(app, sim, 1) == []
    other = open_for(app, "demo-user-2", "cashfree")
    pay_at_gateway(sim, other)
    accept_payment(app, "demo-user-2", "key-2", payment_request(other))
    app.db.execute("UPDATE orders SET order_status = 'cancelled' WHERE id = %s", (other["order_id"],))
    drain(app)
    errors = _sweeps(app, sim, 3)

    # Then no pass failed, the other shopper's refund was followed to its end, and both dashboard amounts went
    # back under refunds of ours, each with a reference of its own
    assert errors == []
    assert app.db.fetch_one("SELECT state FROM gateway_refunds WHERE order_id = %s", (other["order_id"],)) == {
        "state": "succeeded"
    }
    ours = app.db.fetch_all(
        "SELECT refund_ref, amount_paise FROM gateway_refunds WHERE order_id = %s AND state = 'succeeded'",
        (view["order_id"],),
    )
    assert sum(r["amount_paise"] for r in ours) == view["amount_paise"]
    assert len({r["refund_ref"] for r in ours}) == len(ours)
    books_close(app, sim)
