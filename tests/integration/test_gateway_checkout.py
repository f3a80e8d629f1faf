"""The checkout flow against the strict simulator and a real PostgreSQL: gateway orders bound to our
order and shopper, verified signatures, webhooks, reconciliation -- and the attacks of issue 12,
each refused with a code and changing nothing."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import psycopg2
import pytest

from functions.sweeper.handler import SweepFailed
from functions.sweeper.handler import handler as sweeper_handler
from local.gateway_sim import Simulator
from local.lambda_shim import LocalContext
from shared.bootstrap import App
from shared.domain import CheckoutRequest, PaymentRequest
from shared.gateway_signatures import razorpay_checkout_signature
from shared.gateways.cashfree import Cashfree
from shared.http import http_status
from shared.services.checkout import get_checkout, open_checkout
from shared.services.intake import accept_payment, parse_payment_request
from shared.services.outbox import sweep
from shared.services.reconcile import ReconcileFailed, reconcile
from shared.settings import Settings
from tests.integration.gateway_helpers import (
    RAZORPAY,
    WebhookInbox,
    call_api,
    cancelled_and_lost_at_its_refund,
    drain,
    gateway_order,
    jobs,
    no_violations,
    open_for,
    order_of,
    order_status,
    pay_at_gateway,
    pay_gateway,
    payment_request,
    pgmq_gateway_settings,
    post_webhook,
    refused,
    set_stock_of_order,
)
from tests.integration.helpers import pay, row_counts, second_order


@pytest.fixture
def settings(database_url: str, sim: Simulator) -> Settings:
    return pgmq_gateway_settings(
        database_url,
        sim,
        reconcile_after_s=0,
    )


# --- 1. checkout ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["razorpay", "cashfree"])
def test_a_checkout_creates_one_gateway_order_for_the_orders_amount_and_asking_again_returns_it(
    app: App, sim: Simulator, demo: dict[str, int], method: str
) -> None:
    # Given demo-user-1's pending order
    order = order_of(app.db, "demo-user-1")
    request = CheckoutRequest(order_id=order["id"], method=method)  # type: ignore[arg-type]

    # When the shopper asks for a checkout twice
    first_status, first = open_checkout(app, "demo-user-1", request)
    again_status, again = open_checkout(app, "demo-user-1", request)

    # Then one gateway order exists for exactly the order's amount, and the second answer is the same one
    assert (first_status, again_status) == (201, 200)
    assert first == again
    assert (first["amount_paise"], first["currency"], first["status"]) == (order["total_paise"], "INR", "created")
    if method == "razorpay":
        assert first["razorpay"]["key_id"] == RAZORPAY[0]
        fetched = sim.razorpay.orders[first["razorpay"]["order_id"]]
        assert fetched["amount"] == order["total_paise"] and fetched["notes"]["pq_order_id"] == str(order["id"])
        assert len(fetched["receipt"]) <= 40
        assert sim.stats()["razorpay"]["orders_created"] == 1
    else:
        assert first["cashfree"]["payment_session_id"]
        assert list(sim.cashfree.orders) == [first["cashfree"]["order_id"]]


def test_a_lost_create_answer_is_settled_by_lookup_never_a_second_gateway_order(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given Razorpay creates the next order but its answer is lost
    sim.config.fail_after_send = 1
    order = order_of(app.db, "demo-user-1")
    request = CheckoutRequest(order_id=order["id"], method="razorpay")

    # When the shopper asks, is told to retry, and asks again
    busy = refused(open_checkout, app, "demo-user-1", request)
    status, view = open_checkout(app, "demo-user-1", request)

    # Then the retry finds the order made by the first request (by receipt): one order at Razorpay
    assert (http_status(busy), busy.code) == (503, "service_busy") and busy.retry_after_s is not None
    assert status == 201
    assert sim.stats()["razorpay"]["orders_created"] == 1
    assert view["razorpay"]["order_id"] in sim.razorpay.orders


def test_no_token_in_the_create_orders_bucket_is_503_service_busy_with_retry_after(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given the Cashfree Create Order bucket holds one request a minute
    object.__setattr__(app.settings, "gateway_limits_per_min", {"cashfree.create_order": 1.0})
    open_for(app, "demo-user-1", "cashfree")

    # When another shopper asks for a checkout at once
    busy = refused(open_for, app, "demo-user-2", "cashfree")

    # Then they are told to come back, and nothing reached Cashfree
    assert (http_status(busy), busy.code) == (503, "service_busy")
    assert busy.retry_after_s is not None and busy.retry_after_s >= 1
    assert len(sim.cashfree.orders) == 1


def test_a_checkout_is_seen_only_by_its_owner(app: App, sim: Simulator, demo: dict[str, int]) -> None:
    view = open_for(app, "demo-user-1", "razorpay")

    assert get_checkout(app, "demo-user-1", view["checkout_id"]) == view
    other = refused(get_checkout, app, "demo-user-2", view["checkout_id"])
    assert (http_status(other), other.code) == (404, "checkout_not_found")
    someone_elses_order = refused(
        open_checkout, app, "demo-user-2", CheckoutRequest(order_id=view["order_id"], method="razorpay")
    )
    assert (http_status(someone_elses_order), someone_elses_order.code) == (404, "order_not_found")


# --- 2. pay: the attacks -------------------------------------------------------------------------


def test_a_razorpay_checkout_paid_and_submitted_is_captured_once_and_pays_the_order(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    accepted = pay_gateway(app, sim, "demo-user-1", "razorpay")

    drain(app)

    assert jobs(app.db)[0]["status"] == "succeeded"
    assert order_status(app, accepted.body["order_id"]) == "paid"
    stats = sim.stats()
    assert (stats["captures"], stats["double_captures"], stats["refunds"]) == (1, 0, 0)
    checkout = app.db.fetch_one("SELECT status, job_id::text FROM gateway_checkouts")
    assert checkout == {"status": "paid", "job_id": accepted.body["job_id"]}
    no_violations(app)


def test_another_shoppers_payment_on_my_order_is_refused_and_changes_nothing(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given demo-user-2 paid their own checkout at Razorpay (a valid, signed payment of the same amount)
    app.db.execute(
        """UPDATE orders SET (total_paise, items) = (SELECT total_paise, items FROM orders
                                                        WHERE user_id = 'demo-user-1' LIMIT 1)
            WHERE user_id = 'demo-user-2'"""
    )
    victim = open_for(app, "demo-user-2", "razorpay")
    handed = pay_at_gateway(sim, victim)
    mine = open_for(app, "demo-user-1", "razorpay")
    before = row_counts(app.db)

    # When demo-user-1 submits that payment for their own order
    stolen = PaymentRequest(
        order_id=mine["order_id"],
        method="razorpay",
        razorpay_order_id=handed["razorpay_order_id"],
        razorpay_payment_id=handed["razorpay_payment_id"],
        razorpay_signature=handed["razorpay_signature"],
    )
    attack = refused(accept_payment, app, "demo-user-1", "attack-1", stolen)

    # Then it is refused with a code, nothing is recorded, nothing is captured
    assert (http_status(attack), attack.code) == (409, "gateway_order_mismatch")
    assert row_counts(app.db) == before
    assert sim.stats()["captures"] == 0

    # And the rightful payer still pays their order with it
    accept_payment(app, "demo-user-2", "victim-1", payment_request(victim, handed))
    drain(app)
    assert order_status(app, victim["order_id"]) == "paid"
    assert order_status(app, mine["order_id"]) == "pending"
    no_violations(app)


def test_a_forged_checkout_signature_is_refused_and_changes_nothing(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    view = open_for(app, "demo-user-1", "razorpay")
    handed = pay_at_gateway(sim, view)
    before = row_counts(app.db)

    forged = [
        "0" * 64,
        razorpay_checkout_signature(handed["razorpay_order_id"], handed["razorpay_payment_id"], "not-the-secret"),
        handed["razorpay_signature"].upper(),
    ]
    for n, signature in enumerate(forged):
        request = payment_request(view, handed | {"razorpay_signature": signature})
        attack = refused(accept_payment, app, "demo-user-1", f"forged-{n}", request)
        assert (http_status(attack), attack.code) == (422, "gateway_signature_invalid")

    assert row_counts(app.db) == before
    assert sim.stats()["captures"] == 0


def test_someone_elses_payment_on_a_different_amount_order_refunds_nobody(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given demo-user-2 paid their checkout, and demo-user-1's order has another total
    app.db.execute("UPDATE orders SET total_paise = total_paise + 100 WHERE user_id = 'demo-user-1'")
    victim = open_for(app, "demo-user-2", "razorpay")
    handed = pay_at_gateway(sim, victim)
    open_for(app, "demo-user-1", "razorpay")
    before = row_counts(app.db)

    # When demo-user-1 submits it against their order, with and without opening a checkout of their own
    mine = order_of(app.db, "demo-user-1")
    request = payment_request(victim, handed).model_copy(update={"order_id": mine["id"]})
    attack = refused(accept_payment, app, "demo-user-1", "attack-2", request)

    # Then it is refused; no refund, no capture, nothing recorded
    assert (http_status(attack), attack.code) == (409, "gateway_order_mismatch")
    assert row_counts(app.db) == before
    stats = sim.stats()
    assert (stats["captures"], stats["refunds"]) == (0, 0)
    assert sim.razorpay.payments[handed["razorpay_payment_id"]]["status"] == "authorized"


def test_a_gateway_payment_without_a_checkout_is_409_checkout_required(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    order = order_of(app.db, "demo-user-1")
    before = row_counts(app.db)

    refusal = refused(accept_payment, app, "demo-user-1", "k", PaymentRequest(order_id=order["id"], method="cashfree"))

    assert (http_status(refusal), refusal.code) == (409, "checkout_required")
    assert row_counts(app.db) == before


@pytest.mark.parametrize(
    "body",
    [
        '{"order_id": 1, "method": "razorpay", "razorpay_payment_id": "pay_X1"}',
        '{"order_id": 1, "method": "cashfree", "cashfree_order_id": "order_1"}',
        '{"order_id": 1, "method": "razorpay", "razorpay_payment_id": "pay_X1", "razorpay_order_id": "order_1"}',
    ],
)
def test_the_old_bare_reference_bodies_are_refused_with_a_clear_code(body: str) -> None:
    refusal = refused(parse_payment_request, body, ("wallet", "razorpay", "cashfree"))

    assert (http_status(refusal), refusal.code) == (422, "bare_gateway_reference")


# --- 3. process: Cashfree attempts ---------------------------------------------------------------


def test_a_failed_then_successful_attempt_on_one_cashfree_order_pays_the_order_once(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given the shopper's first attempt failed and they submitted the payment anyway
    view = open_for(app, "demo-user-1", "cashfree")
    pay_at_gateway(sim, view, "failed")
    accepted = accept_payment(app, "demo-user-1", "k1", payment_request(view))
    inbox.deliver()

    # When the processor looks: the order is still ACTIVE -> the job waits, the FIFO group is free
    drain(app)
    assert jobs(app.db)[0]["status"] == "processing"
    assert app.db.fetch_one("SELECT count(*) AS n FROM pgmq.q_payments") == {"n": 0}
    from shared.services.reads import queue_status

    assert queue_status(app)["awaiting_gateway"] == 1
    no_violations(app)

    # And the shopper's second attempt succeeds (its webhook wakes the job)
    pay_at_gateway(sim, view, "success")
    assert inbox.deliver() == [200]
    drain(app)

    # Then the order is paid once, by that one job
    assert [(j["id"], j["status"]) for j in jobs(app.db)] == [(accepted.body["job_id"], "succeeded")]
    assert order_status(app, view["order_id"]) == "paid"
    assert app.db.fetch_one("SELECT count(*) AS n FROM payment_transactions") == {"n": 1}
    assert sim.stats()["refunds"] == 0
    # And a resubmission is the same job, not a refusal
    again = accept_payment(app, "demo-user-1", "k2", payment_request(view))
    assert again.body["job_id"] == accepted.body["job_id"]
    no_violations(app)


def test_a_terminated_cashfree_order_fails_the_job_and_the_checkout(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    view = open_for(app, "demo-user-1", "cashfree")
    accept_payment(app, "demo-user-1", "k1", payment_request(view))
    sim.cashfree.set_status(gateway_order(view), "TERMINATED")

    drain(app)

    assert [(j["status"], j["reason"]) for j in jobs(app.db)] == [("failed", "gateway_payment_failed")]
    assert get_checkout(app, "demo-user-1", view["checkout_id"])["status"] == "failed"
    no_violations(app)


# --- 5. webhooks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["cashfree", "razorpay"])
def test_a_checkout_paid_at_the_gateway_with_no_payment_request_ends_with_the_order_paid(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox, method: str
) -> None:
    # Given the shopper paid at the gateway and closed the tab: no POST /v1/payments
    view = open_for(app, "demo-user-1", method)
    pay_at_gateway(sim, view)

    # When the gateway's webhooks arrive and the queue runs
    assert set(inbox.deliver()) == {200}
    drain(app)

    # Then the order is paid, by one job the webhook created
    assert [j["status"] for j in jobs(app.db)] == ["succeeded"]
    assert order_status(app, view["order_id"]) == "paid"
    assert get_checkout(app, "demo-user-1", view["checkout_id"])["job_id"] == jobs(app.db)[0]["id"]
    assert sim.stats()["double_captures"] == 0
    no_violations(app)


def test_a_forged_webhook_is_401_and_records_nothing(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    view = open_for(app, "demo-user-1", "cashfree")
    pay_at_gateway(sim, view)
    real = inbox.pending()
    before = row_counts(app.db)

    forged_body = next(r for r in real if r.gateway == "cashfree")
    tampered = forged_body.body.replace(b'"SUCCESS"', b'"SUCCESS" ', 1)
    attempts = [
        post_webhook("cashfree", tampered, forged_body.headers),
        post_webhook("cashfree", forged_body.body, forged_body.headers | {"x-webhook-signature": "AAAA"}),
        post_webhook(
            "cashfree", forged_body.body, {k: v for k, v in forged_body.headers.items() if "signature" not in k}
        ),
        post_webhook("razorpay", json.dumps({"event": "order.paid"}).encode(), {"x-razorpay-signature": "0" * 64}),
    ]

    for answer in attempts:
        assert answer["statusCode"] == 401
        assert json.loads(answer["body"])["error"]["code"] == "webhook_signature_invalid"
    assert row_counts(app.db) == before
    assert app.db.fetch_one("SELECT count(*) AS n FROM gateway_webhook_events") == {"n": 0}


def test_a_replayed_webhook_is_recorded_once_and_pays_once(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    view = open_for(app, "demo-user-1", "razorpay")
    pay_at_gateway(sim, view)
    deliveries = inbox.pending()

    # When every webhook arrives three times (the gateway's retries, a replay by hand days later)
    statuses = inbox.deliver(deliveries * 3)
    drain(app)

    assert set(statuses) == {200}
    events = app.db.fetch_one("SELECT count(*) AS n FROM gateway_webhook_events")
    assert events == {"n": len(deliveries)}
    assert [j["status"] for j in jobs(app.db)] == ["succeeded"]
    assert sim.stats()["captures"] == 1
    no_violations(app)


def test_a_webhook_for_an_order_paid_meanwhile_refunds_the_bound_payment_and_follows_the_refund(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given a Cashfree checkout paid at the gateway after the order was paid another way
    view = open_for(app, "demo-user-1", "cashfree")
    app.db.execute("UPDATE orders SET order_status = 'cancelled' WHERE id = %s", (view["order_id"],))
    pay_at_gateway(sim, view)

    inbox.deliver()
    drain(app)

    # Then the money goes back (our own checkout's payment), and the sweeper follows the refund to SUCCESS
    assert [(j["status"], j["reason"]) for j in jobs(app.db)] == [("failed", "order_not_payable")]
    assert sim.stats()["refunds"] == 1
    time.sleep(sim.config.refund_settle_s + 0.1)
    app.db.execute("UPDATE gateway_refunds SET next_check_at = now()")
    assert reconcile(app)["refunds_settled"] == 1
    assert app.db.fetch_one("SELECT state FROM gateway_refunds") == {"state": "succeeded"}
    assert get_checkout(app, "demo-user-1", view["checkout_id"])["status"] == "refunded"


@pytest.mark.parametrize("method", ["razorpay", "cashfree"])
def test_the_sweeper_reconciles_a_paid_checkout_whose_webhook_never_came(
    app: App, sim: Simulator, demo: dict[str, int], method: str
) -> None:
    # Given a checkout paid at the gateway, no webhook URL configured, no POST /v1/payments
    view = open_for(app, "demo-user-1", method)
    pay_at_gateway(sim, view)
    assert reconcile(app)["checkouts_reconciled"] == 0  # not due yet

    # When its reconciliation is due and the sweeper runs
    app.db.execute("UPDATE gateway_checkouts SET next_check_at = now()")
    assert reconcile(app)["checkouts_reconciled"] == 1
    sweep(app)
    drain(app)

    # Then the order is paid (captured by us at Razorpay; Cashfree captures by itself)
    assert order_status(app, view["order_id"]) == "paid"
    assert sim.stats()["captures"] == (1 if method == "razorpay" else 0)
    no_violations(app)


@pytest.mark.parametrize("method", ["razorpay", "cashfree"])
def test_a_shopper_cannot_take_the_key_of_the_job_a_paid_checkouts_webhook_makes(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox, method: str
) -> None:
    # Given a shopper who opens a checkout, then pays another order from the wallet under the keys the job a
    # webhook makes for it once took (the checkout's id and a count: keys are the shopper's own namespace)
    view = open_for(app, "demo-user-2", method)
    pay(app, "demo-user-2", f"gateway:{view['checkout_id']}:0", second_order(app.db, "demo-user-2"))

    # When they pay at the gateway and close the tab: only the gateway's webhooks come
    pay_at_gateway(sim, view)
    statuses = inbox.deliver()

    # Then each is taken (a 500 would be sent again and again), and the webhook's job pays the order
    assert statuses and set(statuses) == {200}
    drain(app)
    assert order_status(app, view["order_id"]) == "paid"
    assert sim.stats()["captures"] == (1 if method == "razorpay" else 0)  # Cashfree captures by itself
    no_violations(app)


def test_a_checkout_the_sweeper_cannot_settle_holds_up_no_other_checkout_or_refund_and_fails_the_run(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given a refund booked but never sent (its delivery died), and two checkouts paid with no webhook, the
    # first of which cannot get its job for a reason nobody foresaw (here a constraint added for the test)
    _, _ = cancelled_and_lost_at_its_refund(app, sim, sent=False)
    refunds_before = sim.stats()["refunds"]
    stuck, fine = open_for(app, "demo-user-2", "razorpay"), open_for(app, "demo-user-3", "razorpay")
    pay_at_gateway(sim, stuck)
    pay_at_gateway(sim, fine)
    unforeseen = f"CHECK (order_id <> {int(stuck['order_id'])}) NOT VALID"
    app.db.execute(f"ALTER TABLE payment_jobs ADD CONSTRAINT test_unforeseen {unforeseen}")
    app.db.execute("UPDATE gateway_checkouts SET next_check_at = now() - interval '1 second'")
    app.db.execute("UPDATE gateway_refunds SET next_check_at = now() - interval '1 second'")

    # When the sweeper's reconciliation runs
    with pytest.raises(ReconcileFailed) as failed:
        reconcile(app)

    # Then it failed the run (the sweeper's Errors alarm) only after doing the rest: the other checkout got
    # its job and the refund went to the gateway
    assert "1 item(s) failed" in str(failed.value) and "'checkouts_reconciled': 1" in str(failed.value)
    assert sim.stats()["refunds"] == refunds_before + 1
    made = app.db.fetch_all("SELECT order_id FROM payment_jobs WHERE method = 'razorpay' AND status = 'queued'")
    assert [r["order_id"] for r in made] == [fine["order_id"]]

    # And once the cause is gone, its next turn settles the stuck one
    app.db.execute("ALTER TABLE payment_jobs DROP CONSTRAINT test_unforeseen")
    app.db.execute("UPDATE gateway_checkouts SET next_check_at = now() - interval '1 second'")
    assert reconcile(app)["checkouts_reconciled"] == 1
    drain(app)
    assert order_status(app, stuck["order_id"]) == order_status(app, fine["order_id"]) == "paid"
    no_violations(app)


def test_a_sweeper_step_that_fails_holds_up_no_later_step_and_fails_the_run(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given a refund booked but never sent, a checkout paid with no webhook, and a queued wallet job whose
    # products sold out, which the sold-out bulk end cannot end for a reason nobody foresaw (a constraint)
    _, _ = cancelled_and_lost_at_its_refund(app, sim, sent=False)
    refunds_before = sim.stats()["refunds"]
    checkout = open_for(app, "demo-user-2", "razorpay")
    pay_at_gateway(sim, checkout)
    waiting = pay(app, "demo-user-3", "k3").body
    set_stock_of_order(app, waiting["order_id"], 0)
    app.db.execute("ALTER TABLE payment_jobs ADD CONSTRAINT test_unforeseen CHECK (reason <> 'out_of_stock') NOT VALID")
    app.db.execute("UPDATE gateway_checkouts SET next_check_at = now() - interval '1 second'")
    app.db.execute("UPDATE gateway_refunds SET next_check_at = now() - interval '1 second'")

    # When the sweeper runs
    with pytest.raises(SweepFailed) as failed:
        sweeper_handler({}, LocalContext("sweeper"))

    # Then it failed the run (alarm SweeperErrors) naming the step, after reconciliation did its work: the
    # checkout got its job and the refund went to the gateway
    assert "step(s) failed: sold_out;" in str(failed.value) and "'checkouts_reconciled': 1" in str(failed.value)
    assert sim.stats()["refunds"] == refunds_before + 1
    made = app.db.fetch_all("SELECT order_id FROM payment_jobs WHERE method = 'razorpay' AND status = 'queued'")
    assert [r["order_id"] for r in made] == [checkout["order_id"]]
    assert app.db.fetch_one("SELECT status FROM payment_jobs WHERE id = %s", (waiting["job_id"],)) == {
        "status": "queued"
    }

    # And once the cause is gone, the next run ends the sold-out job's wait, and the books close
    app.db.execute("ALTER TABLE payment_jobs DROP CONSTRAINT test_unforeseen")
    assert sweeper_handler({}, LocalContext("sweeper"))["sold_out_jobs_ended"] == 1
    drain(app)
    assert app.db.fetch_one("SELECT status, reason FROM payment_jobs WHERE id = %s", (waiting["job_id"],)) == {
        "status": "failed",
        "reason": "out_of_stock",
    }
    no_violations(app)


@pytest.mark.parametrize("again", ["cashfree", "auto"])
def test_a_checkout_paid_just_before_it_expired_is_settled_after_the_next_checkout_request_expired_it(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox, again: str
) -> None:
    # Given a Cashfree checkout the shopper paid just before its expiry and then closed the tab, whose webhook
    # never reaches us, and whose expiry passed before the sweeper first looked at it
    view = open_for(app, "demo-user-1", "cashfree")
    pay_at_gateway(sim, view)
    inbox.pending()
    app.db.execute("UPDATE gateway_checkouts SET expires_at = now() - interval '1 second'")

    # When the shopper, seeing the order still pending, asks for a checkout again: the first is marked expired
    # without asking Cashfree. Found by a review: reconciliation then never fetched it, and the money Cashfree
    # captured was applied, refunded or owed nowhere
    again_view = open_for(app, "demo-user-1", again, order_id=view["order_id"])
    assert again_view["checkout_id"] != view["checkout_id"]
    assert app.db.fetch_one("SELECT status FROM gateway_checkouts WHERE id = %s", (view["checkout_id"],)) == {
        "status": "expired"
    }

    # And the sweeper's reconciliation comes round
    app.db.execute("UPDATE gateway_checkouts SET next_check_at = now() - interval '1 second'")
    reconcile(app)
    drain(app)

    # Then the payment to the expired checkout got its job, which paid the order, and the books close
    assert order_status(app, view["order_id"]) == "paid"
    no_violations(app)


def test_an_expired_checkout_is_fetched_until_the_gateway_says_it_is_unpaid_and_then_no_more(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given a Cashfree checkout the shopper never paid, past its expiry (Cashfree expired its order), marked
    # expired by their next checkout request
    view = open_for(app, "demo-user-1", "cashfree")
    app.db.execute("UPDATE gateway_checkouts SET expires_at = now() - interval '1 hour'")
    sim.cashfree.set_status(view["cashfree"]["order_id"], "EXPIRED")
    open_for(app, "demo-user-1", "razorpay", order_id=view["order_id"])

    # When the sweeper's reconciliation passes come round three times
    fetched = []
    for _ in range(3):
        app.db.execute(
            "UPDATE gateway_checkouts SET next_check_at = now() - interval '1 second' WHERE next_check_at IS NOT NULL"
        )
        before = sim.stats("cashfree")["calls"]
        reconcile(app)
        fetched.append(sim.stats("cashfree")["calls"] - before)

    # Then it was fetched once, found expired unpaid past its expiry and grace, and confirmed: never again
    assert fetched == [1, 0, 0]
    assert app.db.fetch_one(
        "SELECT status, next_check_at FROM gateway_checkouts WHERE id = %s", (view["checkout_id"],)
    ) == {"status": "expired", "next_check_at": None}
    assert order_status(app, view["order_id"]) == "pending"


def test_an_expired_razorpay_checkout_is_watched_and_a_late_payment_whose_webhooks_were_lost_pays_the_order(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given a Razorpay checkout left unpaid past its expiry and grace, which reconciliation has looked at
    view = open_for(app, "demo-user-1", "razorpay")
    app.db.execute("UPDATE gateway_checkouts SET expires_at = now() - interval '1 hour'")
    app.db.execute("UPDATE gateway_checkouts SET next_check_at = now() - interval '1 second'")
    before = sim.stats("razorpay")["calls"]
    reconcile(app)
    assert sim.stats("razorpay")["calls"] - before == 1
    looked = app.db.fetch_one(
        "SELECT status, next_check_at > now() AS due_later FROM gateway_checkouts WHERE id = %s",
        (view["checkout_id"],),
    )
    # Then it is expired, but not confirmed as a Cashfree one is: a Razorpay order has no expiry, and takes a
    # payment whenever one is made to it. Found by a review: it was confirmed, never fetched again, and a late
    # payment whose webhooks were all lost (Razorpay disables a webhook failing for a day) was in no book
    assert looked == {"status": "expired", "due_later": True}

    # When the shopper pays it after all, every webhook lost, and reconciliation comes round again
    pay_at_gateway(sim, view)
    inbox.pending()
    app.db.execute("UPDATE gateway_checkouts SET next_check_at = now() - interval '1 second'")
    assert reconcile(app)["checkouts_reconciled"] == 1
    drain(app)

    # Then the payment got its job, which paid the order the shopper still owed, captured once
    assert order_status(app, view["order_id"]) == "paid"
    assert (sim.stats()["captures"], sim.stats()["double_captures"]) == (1, 0)
    no_violations(app)


def test_an_expired_razorpay_checkout_is_watched_a_day_apart_and_no_longer_than_the_watch(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given a Razorpay checkout that expired unpaid
    view = open_for(app, "demo-user-1", "razorpay")
    app.db.execute("UPDATE gateway_checkouts SET expires_at = now() - interval '1 hour'")

    # When reconciliation finds it unpaid within the watch: it is watched, looked at again a day on (Razorpay
    # retries a webhook for 24 hours: sooner finds little a webhook would not bring)
    app.db.execute("UPDATE gateway_checkouts SET next_check_at = now() - interval '1 second'")
    reconcile(app)
    watched = app.db.fetch_one(
        "SELECT next_check_at - now() AS after, watch_until - expires_at AS watch FROM gateway_checkouts WHERE id = %s",
        (view["checkout_id"],),
    )
    watch = app.settings.checkout_late_watch_s
    assert watched is not None and timedelta(hours=23) < watched["after"] <= timedelta(days=1)
    assert watched["watch"] == timedelta(seconds=watch)

    # And when it looks once the watch (PQ_CHECKOUT_LATE_WATCH_S past the expiry) is over
    app.db.execute(
        "UPDATE gateway_checkouts SET expires_at = now() - make_interval(secs => %s) - interval '1 minute',"
        " watch_until = now() - interval '1 minute', next_check_at = now() - interval '1 second'",
        (watch,),
    )
    before = sim.stats("razorpay")["calls"]
    reconcile(app)
    reconcile(app)

    # Then it was fetched once more, and is confirmed: never again
    assert sim.stats("razorpay")["calls"] - before == 1
    assert app.db.fetch_one(
        "SELECT status, next_check_at, watch_until FROM gateway_checkouts WHERE id = %s", (view["checkout_id"],)
    ) == {"status": "expired", "next_check_at": None, "watch_until": None}
    assert order_status(app, view["order_id"]) == "pending"


def test_a_cashfree_checkout_marked_expired_is_looked_at_again_within_30_minutes_after_a_failed_look(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given a Cashfree checkout paid just before its expiry (its webhook lost), looked at through its life, and
    # marked expired by the shopper's next checkout request
    view = open_for(app, "demo-user-1", "cashfree")
    pay_at_gateway(sim, view)
    inbox.pending()
    app.db.execute("UPDATE gateway_checkouts SET expires_at = now() - interval '1 second', checks = 9")
    open_for(app, "demo-user-1", "cashfree", order_id=view["order_id"])

    # When Cashfree is down for reconciliation's look
    sim.config.outage_until = time.time() + 60
    sim.config.outage_gateways = ["cashfree"]
    app.db.execute(
        "UPDATE gateway_checkouts SET next_check_at = now() - interval '1 second' WHERE id = %s",
        (view["checkout_id"],),
    )
    reconcile(app)
    sim.config.outage_until = 0

    # Then its next look is at most 30 minutes off, as a created one's: only a checkout the gateway found unpaid
    # is looked at a day apart (a review found the day's spacing applied to every expired checkout)
    after = app.db.fetch_one(
        "SELECT next_check_at - now() AS wait FROM gateway_checkouts WHERE id = %s", (view["checkout_id"],)
    )
    assert after is not None and after["wait"] <= timedelta(minutes=30)


def test_watched_checkouts_hold_up_no_expired_checkout_waiting_for_the_gateways_first_word(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given a sale's 100 abandoned Razorpay checkouts under watch, all due
    first = open_for(app, "demo-user-2", "razorpay")
    app.db.execute(
        """INSERT INTO gateway_checkouts (order_id, user_id, method, merchant_ref, gateway_order_id, amount_paise,
                                          currency, status, expires_at, created_at, next_check_at, checks,
                                          watch_until)
           SELECT c.order_id, c.user_id, 'razorpay', 'pq' || md5(g::text), c.gateway_order_id || '_' || g,
                  c.amount_paise, c.currency, 'expired', now() - interval '1 day', now() - interval '1 day',
                  now() - interval '1 hour', 12, now() + interval '6 days'
             FROM gateway_checkouts c, generate_series(1, 100) g WHERE c.id = %s""",
        (first["checkout_id"],),
    )
    # And a Cashfree checkout paid just before its expiry, its webhook lost, marked expired by the shopper's next
    # checkout request
    view = open_for(app, "demo-user-1", "cashfree")
    pay_at_gateway(sim, view)
    inbox.pending()
    app.db.execute(
        "UPDATE gateway_checkouts SET expires_at = now() - interval '1 second' WHERE id = %s", (view["checkout_id"],)
    )
    open_for(app, "demo-user-1", "cashfree", order_id=view["order_id"])
    app.db.execute(
        "UPDATE gateway_checkouts SET next_check_at = now() - interval '1 second' WHERE id = %s",
        (view["checkout_id"],),
    )

    # When the sweeper's reconciliation passes once
    result = reconcile(app)
    drain(app)

    # Then the paid checkout got its job at once, and the watched lane took a quarter of the pass
    assert order_status(app, view["order_id"]) == "paid"
    assert result["checkouts_reconciled"] == 1
    looked = app.db.fetch_one(
        "SELECT count(*) AS n FROM gateway_checkouts WHERE watch_until IS NOT NULL AND next_check_at > now()"
    )
    assert looked == {"n": 25}
    no_violations(app)


def test_a_parked_cashfree_job_is_woken_by_the_sweeper_and_paid(app: App, sim: Simulator, demo: dict[str, int]) -> None:
    # Given a job parked on an ACTIVE order, and no webhook ever delivered
    view = open_for(app, "demo-user-1", "cashfree")
    accept_payment(app, "demo-user-1", "k1", payment_request(view))
    drain(app)
    assert jobs(app.db)[0]["status"] == "processing"
    pay_at_gateway(sim, view)

    # When the sweeper's reconciliation runs
    assert reconcile(app)["parked_jobs_woken"] == 1
    drain(app)

    assert jobs(app.db)[0]["status"] == "succeeded"
    assert order_status(app, view["order_id"]) == "paid"
    no_violations(app)


# --- late successes ------------------------------------------------------------------------------


def test_a_razorpay_payment_authorised_late_after_it_failed_pays_the_order(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given the shopper's payment failed at Razorpay (no signature handed to the page, no job)
    view = open_for(app, "demo-user-1", "razorpay")
    failed = pay_at_gateway(sim, view, "failed")
    assert set(inbox.deliver()) == {200}
    assert jobs(app.db) == []

    # When the bank authorises it late and Razorpay says so
    sim.razorpay.late_authorize(failed["razorpay_payment_id"])
    assert set(inbox.deliver()) == {200}
    drain(app)

    # Then the order is paid with it, captured once
    assert [j["status"] for j in jobs(app.db)] == ["succeeded"]
    assert order_status(app, view["order_id"]) == "paid"
    assert (sim.stats()["captures"], sim.stats()["double_captures"]) == (1, 0)
    no_violations(app)


def test_a_late_success_on_an_expired_cashfree_order_is_refunded_when_the_order_is_gone(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given a submitted Cashfree checkout whose order expired unpaid, and the shop cancelled the order
    view = open_for(app, "demo-user-1", "cashfree")
    accept_payment(app, "demo-user-1", "k1", payment_request(view))
    sim.cashfree.set_status(gateway_order(view), "EXPIRED")
    drain(app)
    assert jobs(app.db)[0]["status"] == "processing"  # EXPIRED can still turn PAID: it waits
    app.db.execute("UPDATE orders SET order_status = 'cancelled' WHERE id = %s", (view["order_id"],))

    # When Cashfree's lifecycle turns it PAID after all
    sim.cashfree.late_success(gateway_order(view))
    assert set(inbox.deliver()) == {200}
    drain(app)

    # Then the money goes back: the order can no longer be fulfilled. The shopper reads "refunding" while
    # the refund is pending at Cashfree, "refunded" once it is done
    assert [(j["status"], j["reason"]) for j in jobs(app.db)] == [("failed", "order_not_payable")]
    assert sim.stats()["refunds"] == 1
    assert get_checkout(app, "demo-user-1", view["checkout_id"])["status"] == "refunding"
    time.sleep(sim.config.refund_settle_s + 0.1)
    app.db.execute("UPDATE gateway_refunds SET next_check_at = now()")
    reconcile(app)
    assert get_checkout(app, "demo-user-1", view["checkout_id"])["status"] == "refunded"


# --- over HTTP -----------------------------------------------------------------------------------


def test_post_checkouts_answers_201_then_200_and_get_shows_it_to_its_owner_only(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    order = order_of(app.db, "demo-user-1")["id"]

    first = call_api("enqueue", "POST", "/v1/checkouts", "demo-user-1", {"order_id": order, "method": "cashfree"})
    again = call_api("enqueue", "POST", "/v1/checkouts", "demo-user-1", {"order_id": order, "method": "cashfree"})
    bad = call_api("enqueue", "POST", "/v1/checkouts", "demo-user-1", {"order_id": order, "method": "wallet"})

    assert (first["statusCode"], again["statusCode"], bad["statusCode"]) == (201, 200, 422)
    view = json.loads(str(first["body"]))
    assert set(view) == {"checkout_id", "order_id", "method", "amount_paise", "currency", "status", "cashfree"}
    path = f"/v1/checkouts/{view['checkout_id']}"
    mine = call_api("status", "GET", path, "demo-user-1")
    theirs = call_api("status", "GET", path, "demo-user-2")
    assert (mine["statusCode"], json.loads(str(mine["body"]))) == (200, view)
    assert theirs["statusCode"] == 404


def test_post_checkouts_without_a_gateway_token_is_503_with_retry_after(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    object.__setattr__(app.settings, "gateway_limits_per_min", {"razorpay.create_order": 1.0})
    call_api(
        "enqueue",
        "POST",
        "/v1/checkouts",
        "demo-user-1",
        {"order_id": order_of(app.db, "demo-user-1")["id"], "method": "razorpay"},
    )

    busy = call_api(
        "enqueue",
        "POST",
        "/v1/checkouts",
        "demo-user-2",
        {"order_id": order_of(app.db, "demo-user-2")["id"], "method": "razorpay"},
    )

    assert busy["statusCode"] == 503
    assert json.loads(str(busy["body"]))["error"]["code"] == "service_busy"
    assert int(dict(busy["headers"])["Retry-After"]) >= 1


@pytest.mark.parametrize("method", ["razorpay", "cashfree", "auto"])
def test_a_checkout_of_a_sold_out_order_is_409_sold_out_with_no_gateway_order_but_a_live_one_is_still_answered(
    app: App, sim: Simulator, demo: dict[str, int], method: str
) -> None:
    # Given a shopper with an open checkout, and another whose order's products then sell out
    live = open_for(app, "demo-user-2", "razorpay" if method == "auto" else method)
    order = order_of(app.db, "demo-user-1")["id"]
    set_stock_of_order(app, order, 0)
    set_stock_of_order(app, live["order_id"], 0)
    before = row_counts(app.db), sim.stats()

    # When the second opens a checkout: 409 sold_out naming the products, as a wallet payment would be answered
    error = refused(lambda: open_for(app, "demo-user-1", method))
    assert (http_status(error), error.code) == (409, "sold_out")
    items = app.db.fetch_one("SELECT items FROM orders WHERE id = %s", (order,))
    assert items is not None
    assert error.details["product_ids"] == sorted({int(i["product_id"]) for i in items["items"]})
    # Then no gateway order was made (the simulator saw no call) and nothing was recorded
    assert (row_counts(app.db), sim.stats()) == before
    assert app.db.fetch_one("SELECT count(*) n FROM gateway_checkouts WHERE order_id = %s", (order,)) == {"n": 0}

    # And the first shopper's page is still answered its live checkout, however it asks: they may be paying it
    assert open_for(app, "demo-user-2", method)["checkout_id"] == live["checkout_id"]


def test_a_checkout_of_an_order_paid_meanwhile_is_409_order_not_payable(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    view = open_for(app, "demo-user-1", "razorpay")
    app.db.execute("UPDATE orders SET order_status = 'cancelled' WHERE id = %s", (view["order_id"],))

    refusal = refused(open_for, app, "demo-user-1", "razorpay", view["order_id"])

    assert (http_status(refusal), refusal.code) == (409, "order_not_payable")


def test_a_refund_the_gateway_cancels_is_followed_to_failed_and_scheduled_again(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given Cashfree will cancel the next refund, and a paid checkout whose order was cancelled
    sim.config.cashfree_refund_outcome = "CANCELLED"
    view = open_for(app, "demo-user-1", "cashfree")
    app.db.execute("UPDATE orders SET order_status = 'cancelled' WHERE id = %s", (view["order_id"],))
    pay_at_gateway(sim, view)
    inbox.deliver()
    drain(app)
    assert app.db.fetch_one("SELECT state FROM gateway_refunds") == {"state": "pending"}

    # When the refund settles at the gateway and the sweeper follows it
    time.sleep(sim.config.refund_settle_s + 0.1)
    app.db.execute("UPDATE gateway_refunds SET next_check_at = now()")
    result = reconcile(app)

    # Then it is recorded failed and due to be sent again (tests/integration/test_gateway_books.py follows
    # it to the end), and the operator's queue view counts the money on its way back
    assert result["refunds_settled"] == 1
    assert app.db.fetch_one("SELECT state, gateway_status, retry_at IS NOT NULL AS due FROM gateway_refunds") == {
        "state": "failed",
        "gateway_status": "CANCELLED",
        "due": True,
    }
    from shared.services.reads import queue_status

    status = queue_status(app)
    assert (status["gateway_refunds_failed"], status["refunds"]["refunding"]) == (0, 1)


def test_a_success_webhook_arriving_while_the_job_fetches_is_not_left_waiting(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a submitted Cashfree checkout whose processor fetches the order while it is still ACTIVE,
    # and the shopper's success (and its webhook, which finds the job live) lands right after that fetch
    view = open_for(app, "demo-user-1", "cashfree")
    accept_payment(app, "demo-user-1", "k1", payment_request(view))
    cashfree = app.gateways["cashfree"]
    assert isinstance(cashfree, Cashfree)
    fetch = cashfree.api.fetch_order

    def fetch_then_pay(order_id: str) -> object:
        order = fetch(order_id)
        monkeypatch.setattr(cashfree.api, "fetch_order", fetch)
        pay_at_gateway(sim, view)
        assert inbox.deliver() == [200]
        return order

    monkeypatch.setattr(cashfree.api, "fetch_order", fetch_then_pay)

    # When the queue runs (no sweeper: nothing else would wake a waiting job)
    drain(app)

    # Then the job was sent again at once and paid the order
    assert [j["status"] for j in jobs(app.db)] == ["succeeded"]
    assert order_status(app, view["order_id"]) == "paid"
    no_violations(app)


HISTORY = 20_000


def _history(app: App, next_check_at: str) -> str:
    """HISTORY expired checkouts of past sales (next_check_at as given: in the past, as migration 0023 leaves
    them, or NULL once confirmed), and one created checkout due for its reconciliation now; the latter's id."""
    app.db.execute(
        f"""INSERT INTO gateway_checkouts (order_id, user_id, method, merchant_ref, gateway_order_id, amount_paise,
                                          currency, status, expires_at, next_check_at, created_at)
            SELECT o.id, o.user_id, 'cashfree', 'hist' || g, 'order_hist_' || g, o.total_paise, o.currency,
                   'expired', now() - interval '30 days', {next_check_at}, now() - interval '30 days'
              FROM orders o, generate_series(1, {HISTORY}) g
             WHERE o.user_id = 'demo-user-1'"""
    )
    row = app.db.fetch_one(
        """INSERT INTO gateway_checkouts (order_id, user_id, method, merchant_ref, gateway_order_id, amount_paise,
                                          currency, status, expires_at, next_check_at)
           SELECT o.id, o.user_id, 'cashfree', 'paidlost1', 'order_paid_lost', o.total_paise, o.currency,
                  'created', now() + interval '10 minutes', now() - interval '1 second'
             FROM orders o WHERE o.user_id = 'demo-user-2'
           RETURNING id"""
    )
    assert row is not None
    app.db.execute("ANALYZE gateway_checkouts")
    return str(row["id"])


def test_a_backlog_of_expired_checkouts_holds_up_no_checkout_due_now_and_takes_a_quarter_of_a_pass(
    app: App, demo: dict[str, int]
) -> None:
    # Given the expired checkouts of past sales, each due for one more look (as migration 0023 leaves them), and
    # a checkout paid now whose webhook was lost, due for its reconciliation fetch
    due = _history(app, "now() - interval '30 days'")

    # When the sweeper's reconciliation claims a pass of 100
    claimed = [str(r["id"]) for r in app.db.fetch_all("SELECT id, status FROM pq_checkouts_to_reconcile(100)")]

    # Then the one due now is in it, beside a quarter of a pass of the backlog. Found by a review: the backlog,
    # older, came first, HISTORY / 100 minutes of it
    assert due in claimed and len(claimed) == 1 + 25


def test_a_reconciliation_pass_goes_by_index_however_many_checkouts_ever_were(
    app: App, demo: dict[str, int], database_url: str
) -> None:
    # Given past sales' checkouts, confirmed unpaid (next_check_at NULL: out of reconciliation for good)
    _history(app, "NULL")

    # When the sweeper's reconciliation claims its pass
    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pq_checkouts_to_reconcile(100)")
            cur.execute(
                "SELECT coalesce(sum(seq_scan), 0) FROM pg_stat_xact_user_tables WHERE relname = 'gateway_checkouts'"
            )
            scans = cur.fetchone()
        conn.rollback()
    finally:
        conn.close()

    # Then no scan read every checkout: each kind came from its partial index. Found by a review: one claim of
    # both kinds could use neither index
    assert scans == (0,)
