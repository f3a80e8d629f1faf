"""Races of the checkout flow, against the strict simulator and a real PostgreSQL: a gateway payment
named against the wrong order neither pays it nor blocks the payment's own checkout."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from local.gateway_sim import Simulator
from local.invariants import check
from shared.bootstrap import App
from shared.domain import FailureReason, PaymentRequest
from shared.gateway_signatures import razorpay_checkout_signature
from shared.services.intake import accept_payment, job_message, send_jobs
from shared.settings import Settings
from tests.integration.gateway_helpers import (
    RAZORPAY,
    WebhookInbox,
    drain,
    gateway_order,
    gateway_settings,
    jobs,
    open_for,
    order_of,
    pay_at_gateway,
    payment_request,
)


@pytest.fixture
def settings(database_url: str, sim: Simulator) -> Settings:
    return Settings(
        database_url=database_url,
        queue_backend="pgmq",
        event_bus_backend="pgmq",
        sweep_after_s=0,
        max_receive_count=10,
        **gateway_settings(sim),
    )


@pytest.fixture
def inbox(sim: Simulator) -> Iterator[WebhookInbox]:
    box = WebhookInbox(sim)
    yield box
    box.close()


def no_violations(app: App) -> None:
    assert check(app.db) == dict.fromkeys(check(app.db), 0)


def order_status(app: App, order_id: int) -> str:
    row = app.db.fetch_one("SELECT order_status FROM orders WHERE id = %s", (order_id,))
    assert row is not None
    return str(row["order_status"])


# --- 1. a failed job gives back the payment it could not use -------------------------------------


def _name_it_in_a_job_of_my_checkout(app: App, sim: Simulator, payment_id: str) -> None:
    """demo-user-1 submits demo-user-2's payment for their own checkout, under a signature of that pair
    (which only the key secret makes: the check at intake otherwise refuses it, a leaked key does not)."""
    mine = open_for(app, "demo-user-1", "razorpay")
    signature = razorpay_checkout_signature(gateway_order(mine), payment_id, RAZORPAY[1])
    stolen = PaymentRequest(
        order_id=mine["order_id"],
        method="razorpay",
        razorpay_order_id=gateway_order(mine),
        razorpay_payment_id=payment_id,
        razorpay_signature=signature,
    )
    accept_payment(app, "demo-user-1", "attack-1", stolen)


def _name_it_in_an_old_flow_job(app: App, sim: Simulator, payment_id: str) -> None:
    """demo-user-1 names demo-user-2's payment as the previous release's intake took it: a bare reference."""
    order_id = order_of(app.db, "demo-user-1")["id"]
    job = app.db.fetch_one(
        "SELECT outcome, job_id FROM pq_enqueue_job(%s, %s, %s, %s, %s, %s)",
        ("demo-user-1", "old-flow-1", "h", order_id, "razorpay", payment_id),
    )
    assert job is not None and job["outcome"] == "created"
    send_jobs(app, [job_message(str(job["job_id"]), "demo-user-1", order_id, "razorpay")])


@pytest.mark.parametrize(
    ("named", "reason"),
    [
        (_name_it_in_a_job_of_my_checkout, "gateway_order_mismatch"),
        (_name_it_in_an_old_flow_job, "gateway_payment_unbound"),
    ],
)
@pytest.mark.parametrize("comes_back_by", ["submit", "webhook"])
def test_a_job_that_named_someone_elses_payment_gives_it_back_and_the_payment_pays_its_own_order(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox, named: Any, reason: str, comes_back_by: str
) -> None:
    # Given demo-user-2 paid their checkout at Razorpay (its webhooks held back for now), and a job of
    # demo-user-1 that named that payment failed without touching it
    victim = open_for(app, "demo-user-2", "razorpay")
    handed = pay_at_gateway(sim, victim)
    webhooks = inbox.pending()
    named(app, sim, handed["razorpay_payment_id"])
    drain(app)
    assert [(j["status"], j["reason"]) for j in jobs(app.db)] == [("failed", reason)]
    assert sim.stats()["captures"] == 0

    # When the rightful shopper submits their payment, or its webhook arrives
    if comes_back_by == "submit":
        accept_payment(app, "demo-user-2", "victim-1", payment_request(victim, handed))
    else:
        assert set(inbox.deliver(webhooks)) == {200}
    drain(app)

    # Then it pays their order, captured once; demo-user-1's order stays unpaid
    assert [(j["status"], j["reason"]) for j in jobs(app.db)] == [("failed", reason), ("succeeded", None)]
    assert order_status(app, victim["order_id"]) == "paid"
    assert order_status(app, order_of(app.db, "demo-user-1")["id"]) == "pending"
    assert (sim.stats()["captures"], sim.stats()["double_captures"]) == (1, 0)
    no_violations(app)


# The failures after which the job moved no money with its payment and the payment was never its to use,
# or the gateway's verdict on it may still change. Every other failure keeps the payment for good.
GIVES_THE_PAYMENT_BACK = {
    FailureReason.GATEWAY_PAYMENT_NOT_FOUND,
    FailureReason.GATEWAY_ORDER_MISMATCH,
    FailureReason.GATEWAY_PAYMENT_UNBOUND,
    FailureReason.GATEWAY_PAYMENT_FAILED,
    FailureReason.GATEWAY_CHECKOUT_EXPIRED,
}


def test_only_a_failure_that_moved_no_money_and_judged_no_payment_of_its_own_gives_the_payment_back(
    app: App, demo: dict[str, int]
) -> None:
    order_id = order_of(app.db, "demo-user-1")["id"]

    def enqueue(key: str, ref: str) -> dict[str, Any]:
        row = app.db.fetch_one(
            "SELECT outcome, job_id FROM pq_enqueue_job(%s, %s, 'h', %s, 'razorpay', %s)",
            ("demo-user-1", key, order_id, ref),
        )
        assert row is not None
        return row

    def fail(job_id: object, reason: str, refund_id: str | None = None) -> None:
        app.db.execute(
            "SELECT pq_gateway_refunded(%s, %s, %s, %s, %s)",
            (job_id, reason, refund_id, 100 if refund_id else None, "INR" if refund_id else None),
        )

    # Given, for each way a gateway job fails (and for a refund), a job that failed so with its own payment
    given_back = {}
    for n, (reason, refund_id) in enumerate([(r, None) for r in FailureReason] + [("out_of_stock", "rfnd_1")]):
        ref = f"pay_rule{n}"
        fail(enqueue(f"first-{n}", ref)["job_id"], reason, refund_id)

        # When another job names the same payment
        again = enqueue(f"again-{n}", ref)

        # Then it gets it only after a failure in the list, and never after a refund
        given_back[(reason, refund_id)] = again["outcome"] == "created"
        if again["outcome"] == "created":
            fail(again["job_id"], FailureReason.GATEWAY_PAYMENT_UNBOUND)
        else:
            assert again["outcome"] == "gateway_ref_in_use"
    assert given_back == {(r, None): r in GIVES_THE_PAYMENT_BACK for r in FailureReason} | {
        ("out_of_stock", "rfnd_1"): False
    }
