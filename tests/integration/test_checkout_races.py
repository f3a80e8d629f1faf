"""Races of the checkout flow, against the strict simulator and a real PostgreSQL: a gateway payment
named against the wrong order neither pays it nor blocks the payment's own checkout; concurrent
requests for one checkout make one gateway order; a refused checkout leaves nothing behind."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from local.gateway_sim import Simulator
from shared.bootstrap import App, build_app
from shared.domain import CheckoutRequest, FailureReason, PaymentRequest
from shared.errors import DomainError
from shared.gateway_signatures import razorpay_checkout_signature
from shared.gateways.razorpay import Razorpay
from shared.http import http_status
from shared.services.checkout import open_checkout
from shared.services.intake import accept_payment, job_message, send_jobs
from shared.settings import Settings
from tests.integration.gateway_helpers import (
    RAZORPAY,
    WebhookInbox,
    drain,
    gateway_order,
    jobs,
    no_violations,
    open_for,
    order_of,
    order_status,
    pay_at_gateway,
    payment_request,
    pgmq_gateway_settings,
    refused,
)


@pytest.fixture
def settings(database_url: str, sim: Simulator) -> Settings:
    return pgmq_gateway_settings(
        database_url,
        sim,
        # Long enough that a request waiting for another's create call sees its answer on a busy machine.
        checkout_wait_s=10,
    )


def checkouts_of(app: App, order_id: int) -> list[dict[str, Any]]:
    return app.db.fetch_all("SELECT status FROM gateway_checkouts WHERE order_id = %s", (order_id,))


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
    # Its shopper left the line before any payment of it was read (no book of it): nothing to give back.
    FailureReason.CANCELLED,
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
        if refund_id is None:
            app.db.execute("SELECT pq_gateway_fail(%s, %s)", (job_id, reason))
            return
        # A refund of the job's payment booked (pq_refund_request), sent and answered pending
        app.db.execute("SELECT pq_gateway_begin(%s, 100, 100)", (job_id,))
        request = app.db.fetch_one("SELECT * FROM pq_refund_request(%s, 100, 'INR', %s, 100)", (job_id, reason))
        assert request is not None
        app.db.execute(
            "SELECT pq_gateway_refunded(%s, %s, %s, %s, 'pending', NULL)",
            (job_id, reason, request["refund_id"], refund_id),
        )

    # Given, for each way a gateway job fails (and for a refund), a job that failed so with its own payment
    given_back = {}
    refunded: list[tuple[str, str | None]] = [("out_of_stock", "rfnd_1"), ("cancelled", "rfnd_2")]
    cases: list[tuple[str, str | None]] = [(r, None) for r in FailureReason]
    for n, (reason, refund_id) in enumerate(cases + refunded):
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
    assert given_back == {(r, None): r in GIVES_THE_PAYMENT_BACK for r in FailureReason} | dict.fromkeys(
        refunded, False
    )


# --- 2. concurrent checkouts of one order: one gateway order -------------------------------------


def test_two_concurrent_checkouts_of_one_order_make_one_gateway_order(
    app: App, settings: Settings, sim: Simulator, demo: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given Razorpay answers every request after 300 ms, and the shopper's two tabs ask for a checkout of
    # one order: the second while the first's create call is out (held until the second has done all it
    # would, or a second has passed)
    sim.config.latency_ms = 300
    request = CheckoutRequest(order_id=order_of(app.db, "demo-user-1")["id"], method="razorpay")
    other_tab = build_app(settings)
    answers: dict[str, tuple[int, dict[str, Any]] | DomainError] = {}

    def ask(tab: str, tab_app: App) -> None:
        try:
            answers[tab] = open_checkout(tab_app, "demo-user-1", request)
        except DomainError as exc:
            answers[tab] = exc

    second = threading.Thread(target=ask, args=("second", other_tab))
    razorpay = app.gateways["razorpay"]
    assert isinstance(razorpay, Razorpay)
    create_order = razorpay.api.create_order

    def create_while_the_second_asks(*args: Any, **kwargs: Any) -> Any:
        second.start()
        second.join(timeout=1.0)
        return create_order(*args, **kwargs)

    monkeypatch.setattr(razorpay.api, "create_order", create_while_the_second_asks)

    # When both run
    try:
        ask("first", app)
        second.join(timeout=30)
    finally:
        other_tab.db.close()

    # Then Razorpay made one order, the second request waited for the first's answer and got the same
    # checkout, and neither looked an order up
    first = answers["first"]
    assert isinstance(first, tuple) and first[0] == 201
    assert answers["second"] == (200, first[1])
    assert sim.stats()["razorpay"]["orders_created"] == 1
    assert sim.stats()["by_endpoint"] == {"POST /v1/orders": 1}


def test_a_claimed_create_call_is_waited_for_then_503_and_taken_over_once_its_claim_lapses(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given a request that opened demo-user-1's checkout and claimed its create call, then was never heard
    # of again (its function timed out before the call left)
    order_id = order_of(app.db, "demo-user-1")["id"]
    opened = app.db.fetch_one(
        "SELECT outcome FROM pq_checkout_open('demo-user-1', %s, 'razorpay', 1800, 30)", (order_id,)
    )
    assert opened == {"outcome": "pending"}
    object.__setattr__(app.settings, "checkout_wait_s", 0.3)
    request = CheckoutRequest(order_id=order_id, method="razorpay")

    # When the shopper asks while the claim lasts, then after it lapsed
    busy = refused(open_checkout, app, "demo-user-1", request)
    app.db.execute("UPDATE gateway_checkouts SET create_claimed_until = now() - interval '1 second'")
    status, view = open_checkout(app, "demo-user-1", request)

    # Then the first is told to retry and made no gateway call; the second settles it: looks the order up
    # by receipt, finds none, creates one
    assert (http_status(busy), busy.code, busy.retry_after_s) == (503, "service_busy", 1)
    assert (status, view["status"]) == (201, "created")
    assert sim.stats()["by_endpoint"] == {"GET /v1/orders": 1, "POST /v1/orders": 1}
    assert checkouts_of(app, order_id) == [{"status": "created"}]


# --- 3. a refused checkout records nothing -------------------------------------------------------


@pytest.mark.parametrize("refused_by", ["our limiter", "the gateway's 429"])
def test_a_checkout_refused_before_the_gateway_made_an_order_records_nothing(
    app: App, sim: Simulator, demo: dict[str, int], refused_by: str
) -> None:
    # Given no token in the Razorpay Create Order bucket (demo-user-1 took the only one), or Razorpay
    # answering 429 to everything
    if refused_by == "our limiter":
        object.__setattr__(app.settings, "gateway_limits_per_min", {"razorpay.create_order": 1.0})
        open_for(app, "demo-user-1", "razorpay")
    else:
        sim.config.rate_429 = 1.0
    order_id = order_of(app.db, "demo-user-2")["id"]

    # When demo-user-2 asks for a checkout
    busy = refused(open_for, app, "demo-user-2", "razorpay")

    # Then they are told to come back, and no checkout of their order is left behind
    assert (http_status(busy), busy.code) == (503, "service_busy") and busy.retry_after_s is not None
    assert checkouts_of(app, order_id) == []

    # And once the gateway takes requests again, asking again creates one order
    if refused_by == "the gateway's 429":
        sim.config.rate_429 = 0.0
        status, _ = open_checkout(app, "demo-user-2", CheckoutRequest(order_id=order_id, method="razorpay"))
        assert status == 201
        assert sim.stats()["razorpay"]["orders_created"] == 1
