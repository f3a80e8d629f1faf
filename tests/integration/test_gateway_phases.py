"""The phases of a gateway payment (shared/services/gateway.py): COMPLETE alone decides whether a captured
payment's order is fulfilled, booking the refund with its decision, and a redelivery resumes at the phase
the job recorded."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from local.gateway_sim import Simulator
from local.invariants import check
from shared.bootstrap import App
from shared.gateways.verdicts import Phase, Step
from shared.services.gateway import process_gateway_job
from shared.settings import Settings
from tests.integration.gateway_helpers import (
    cancelled_and_lost_at_its_refund,
    jobs,
    order_of,
    pay_gateway,
    pgmq_gateway_settings,
    set_stock_of_order,
)


@pytest.fixture
def settings(database_url: str, sim: Simulator) -> Settings:
    return pgmq_gateway_settings(database_url, sim)


def ours(app: App) -> list[tuple[Any, ...]]:
    rows = app.db.fetch_all(
        "SELECT attempt, reason, amount_paise, state FROM gateway_refunds WHERE origin = 'ours' ORDER BY attempt"
    )
    return [(r["attempt"], r["reason"], r["amount_paise"], r["state"]) for r in rows]


def test_an_order_sold_out_while_its_payment_is_captured_is_refunded_on_completes_one_decision(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given a Razorpay authorisation for an order that can be fulfilled when the delivery begins, whose
    # products sell out while the capture is at the gateway
    order = order_of(app.db, "demo-user-1")
    job_id = pay_gateway(app, sim, "demo-user-1", "razorpay").body["job_id"]
    api = app.gateways["razorpay"].api  # type: ignore[attr-defined]
    real_capture = api.capture

    def sold_out_meanwhile(ref: str, amount_paise: int, currency: str) -> Any:
        set_stock_of_order(app, order["id"], 0)
        return real_capture(ref, amount_paise, currency)

    api.capture = sold_out_meanwhile

    # When the processor takes the job
    before = app.db.round_trips
    outcome = process_gateway_job(app, job_id, "razorpay", receipt_handle="payments:0:1", receive_count=1)
    spent = app.db.round_trips - before - 1  # less the sell-out above

    # Then COMPLETE's answer is the one the money follows: nothing sold, all of it refunded, the job failed
    assert (outcome.outcome, outcome.reason) == ("failed", "out_of_stock")
    stats = sim.stats()
    assert (stats["captures"], stats["refunds"]) == (1, 1)
    assert ours(app) == [(1, "out_of_stock", order["total_paise"], "pending")]
    assert app.db.fetch_one("SELECT count(*) AS n FROM payment_transactions") == {"n": 0}
    # And the refund was booked in COMPLETE's own transaction: begin (+ fetch token), capture token,
    # complete (the decision and its refund), refund token, the refund's answer
    assert spent == 5
    assert check(app.db)["gateway_unaccounted_paise"] == 0  # every captured paisa refunding


def test_a_delivery_lost_after_its_refund_left_resumes_at_the_refund_and_never_sends_it_twice(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given a paid Cashfree checkout whose order was cancelled meanwhile, and a first delivery that dies
    # (a Lambda timeout) right after its refund reached Cashfree
    view, job_id = cancelled_and_lost_at_its_refund(app, sim, sent=True)

    # When the message comes back and the order could even be paid now
    app.db.execute("UPDATE orders SET order_status = 'pending' WHERE id = %s", (view["order_id"],))
    outcome = process_gateway_job(app, job_id, "cashfree", receipt_handle="payments:0:2", receive_count=2)

    # Then the second delivery finishes the refund the first decided (found at Cashfree, not sent again):
    # one refund of the whole payment, the order not fulfilled with money that went back
    assert (outcome.outcome, outcome.reason) == ("failed", "order_not_payable")
    assert sim.stats()["refunds"] == 1
    assert [r[:3] for r in ours(app)] == [(1, "order_not_payable", view["amount_paise"])]
    assert [(j["status"], j["reason"]) for j in jobs(app.db)] == [("failed", "order_not_payable")]
    assert app.db.fetch_one("SELECT count(*) AS n FROM payment_transactions") == {"n": 0}
    assert check(app.db)["gateway_unaccounted_paise"] == 0


def test_every_phase_after_the_verdict_is_the_step_of_exactly_one_kind() -> None:
    # Given the steps the driver takes (a gateway's verdict, or one only the driver takes)
    phases = [kind.phase for kind in get_args(Step)]

    # Then each names its own phase, and every phase but BEGIN and VERDICT (before any step) has one
    assert len(phases) == len(set(phases))
    assert set(phases) == set(Phase) - {Phase.BEGIN, Phase.VERDICT}
